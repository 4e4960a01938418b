//! The test PostgreSQL server: it starts (or is found), each test gets a database of its own,
//! and a dropped database is gone.

use valet_testkit::postgres::{database, run_sql};

#[test]
fn each_test_database_is_its_own_and_is_dropped_after() {
    let one = database();
    let two = database();
    assert_ne!(one.name(), two.name());
    run_sql(
        one.url(),
        "CREATE TABLE t (n INT); INSERT INTO t VALUES (1)",
    )
    .unwrap();
    let err = run_sql(two.url(), "SELECT n FROM t").unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
    let (url, admin) = (one.url().to_owned(), one.admin_url().to_owned());
    drop(one);
    let err = run_sql(&url, "SELECT 1").unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
    run_sql(&admin, "SELECT 1").unwrap();
}
