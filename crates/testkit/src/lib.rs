//! Test support shared by the integration tests of the store, the gate and the `valet` binary.
//!
//! Only what more than one crate's tests need lives here; each crate's own fixtures (a running
//! store, a gate with its store and upstream) stay in its `tests/support`. Everything here
//! works against real servers over loopback: nothing is mocked.
//!
//! - [`openapi`]: an OpenAPI document against a router's route list: the same operations, every
//!   `$ref` resolving, every operation documenting a success and naming its path parameters,
//!   and what a real server answers to every method on every documented path.
//! - [`logs`]: everything the process logs through `tracing`, event and span fields alike, as
//!   text, to look for secrets in.
//! - [`raw_http`]: requests sent byte for byte over a `TcpStream` (so that no client library
//!   normalises them) and their answers read back: status, head, body, JSON error code.
//! - [`data`]: reproducible, random-looking bodies to send and compare.
//! - [`postgres`]: a real PostgreSQL server shared by a test binary (`VALET_TEST_POSTGRES`, or
//!   a private cluster started from the machine's binaries), a database of its own per test.
//! - [`garage`]: a real S3 cluster (single-node Garage), once per test binary, a bucket per test.
//! - [`process`]: a server process under test: free loopback addresses, its output kept as
//!   text, waiting until it is ready.
//!
//! Dev-only (`publish = false`): a crate names it in `[dev-dependencies]` only.

pub mod data;
pub mod garage;
pub mod logs;
pub mod openapi;
pub mod postgres;
pub mod process;
pub mod raw_http;
