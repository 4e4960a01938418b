//! The store: the data tier. It validates every request's valet key itself and moves the bytes.
//! Not built yet: see the store issue.
