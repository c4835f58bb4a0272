"""The stream's consumers: a pure core, adapters around it, and the runtimes that drive them."""
