"""Pieces shared by the recurrent algorithms of the family (as sb3-contrib keeps them in its common/recurrent/)."""
