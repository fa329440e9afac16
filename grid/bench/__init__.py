"""`grid bench`: routing policies against each other on identical traffic (common random numbers),
with confidence intervals over seeds, plots, and the fluid LP lower bound (`lp_bound`)."""
