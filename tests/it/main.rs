//! The one integration test binary: end-to-end tests against the simulator.
