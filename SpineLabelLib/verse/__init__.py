"""VerSe dataset format: layout, centroid JSON, body centroids, snapshots, metrics.

Centroids travel as ``dict[int, numpy.ndarray]``: VerSe label value -> (3,) float voxel
index (i, j, k) on the grid of the image/mask they belong to (named ``centroids_ijk``).
World positions (RAS mm) are obtained with ``Image.index_to_world``.
"""
