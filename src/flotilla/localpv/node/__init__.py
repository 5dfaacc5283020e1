"""The node half of localpv: the agent that realises its node's LocalVolumes, and its metrics."""
