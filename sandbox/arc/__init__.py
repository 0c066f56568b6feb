"""Route 53 Application Recovery Controller (routing control): control plane and cluster data plane."""
