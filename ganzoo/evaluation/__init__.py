"""Scoring generated images with metric plugins under a recorded protocol (``scoring``), and ranking training runs
by the scores they recorded (``runs``)."""
