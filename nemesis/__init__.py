"""nemesis: faults as data, and the executors that apply them."""
