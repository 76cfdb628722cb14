"""Live quality of a run: precision (NeNA), resolution (FRC), drift (RCC), model mismatch."""
