//! The current-state views: the source tables as they stand now, rebuilt from their changelogs.
//!
//! The SQL lives in `sql/current_state/<view>.sql`, the one copy that DuckDB (`scripts/lakehouse.py`), Trino
//! (`CREATE VIEW ... AS` + the file) and `ledgerstream query` all use; it is compiled in here so the binary needs
//! no files at run time. Each file is a single portable `SELECT` over its changelog table, named unqualified.

/// A view over one changelog table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentStateView {
    /// Name the view is registered under.
    pub name: &'static str,
    /// The changelog table it reads; the view is registered only where this table exists.
    pub source: &'static str,
    /// The `SELECT` (comments included, no trailing semicolon).
    pub sql: &'static str,
}

/// Every current-state view, in registration order.
pub const VIEWS: [CurrentStateView; 2] = [
    CurrentStateView {
        name: "users_current",
        source: "users_changes",
        sql: include_str!("../../sql/current_state/users_current.sql"),
    },
    CurrentStateView {
        name: "wallets_current",
        source: "wallets_changes",
        sql: include_str!("../../sql/current_state/wallets_current.sql"),
    },
];

impl CurrentStateView {
    /// `CREATE VIEW <name> AS <select>`, in the dialect DuckDB, DataFusion and Trino share.
    pub fn create_statement(&self) -> String {
        format!(
            "CREATE VIEW {} AS\n{}",
            self.name,
            self.sql.trim().trim_end_matches(';')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_is_one_select_over_its_changelog() {
        for v in VIEWS {
            let body: Vec<&str> = v
                .sql
                .lines()
                .filter(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
                .collect();
            let body = body.join("\n");
            assert!(body.starts_with("WITH "), "{}: {body}", v.name);
            assert!(
                !body.contains(';'),
                "{}: one statement, no semicolon",
                v.name
            );
            assert!(body.contains(&format!("FROM {}", v.source)), "{}", v.name);
            assert_eq!(v.name.replace("_current", "_changes"), v.source);
            let create = v.create_statement();
            assert!(create.starts_with(&format!("CREATE VIEW {} AS\n--", v.name)));
            // Deletes are removed and the highest LSN per key wins.
            assert!(
                body.contains("max(lsn)") && body.contains("c.op <> 'd'"),
                "{}",
                v.name
            );
        }
    }
}
