"""The vector kernel (``kernel``: validation, normalisation, distances, exact top-k; ``recall``) and
vector-set formats (``formats``: HDF5, *vecs, npz, synthetic)."""
