"""Online adaptation: losses, methods (BOA and baselines), mean teacher, drift guard and the
background worker."""
