//! Training pieces: the optimiser ([`optim`]).

pub mod optim;
