"""Scheduling policies for balloon-gym (installed as ``balloon_gym.agents``)."""
