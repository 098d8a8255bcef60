"""Lightning training of the audio tower (stage 1) and the fused twin towers (stage 2)."""
