"""Privacy-preserving aggregation: DP accounting, client mods and the SecAgg+ bridge."""
