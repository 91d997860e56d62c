"""Cited answers, briefings and citation evals over your own articles."""
