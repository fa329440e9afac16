"""Capacity experiments: `grid sweep` (scenario-field sweeps on Ray, cached and resumable) and
`grid plan` (the cheapest N-1-secure replicas per zone at peak demand, verified by simulation)."""
