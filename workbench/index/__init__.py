"""Vector indexes behind one interface (see ``base.VectorIndex``)."""
