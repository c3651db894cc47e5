"""One stack per deployable layer; each only wires constructs together and exports what later layers need."""
