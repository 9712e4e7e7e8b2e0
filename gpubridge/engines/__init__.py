"""Engine layer: the Engine protocol, runtimes (imported lazily) and the failover router."""
