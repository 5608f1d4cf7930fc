"""The fleet: one desired model state shared by every replica, and each replica's report."""
