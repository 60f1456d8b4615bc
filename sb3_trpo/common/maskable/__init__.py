"""Pieces shared by the maskable algorithms of the family (as sb3-contrib keeps them in its common/maskable/)."""
