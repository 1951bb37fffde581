//! A deterministic network simulator for the sans-IO core.
