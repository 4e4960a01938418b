//! The gate: authenticates clients, issues and revokes valet keys, routes requests.
//! Not built yet: see the gate issue.
