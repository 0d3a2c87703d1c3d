"""Tools around the network: benchmarking, tiled inference on large images, image file I/O.

The layers (:mod:`clg_layers.layers`) and the network and zoo
(:mod:`clg_layers.models`) do not depend on anything here.
"""
