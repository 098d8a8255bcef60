"""Curation stages, one small class a module; `curation.pipeline.build_stages` puts them in order.

Nothing is imported here: Ray actors of model stages unpickle their stage in `.venv-models`,
which must not have to import every other stage's dependencies.
"""
