"""Tools around the network: benchmarking and tiled inference on large images.

The layers (:mod:`clg_layers.layers`) and the network and zoo
(:mod:`clg_layers.models`) do not depend on anything here.
"""
