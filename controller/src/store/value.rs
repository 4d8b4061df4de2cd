//! What crosses between the store and either engine: [`Value`] (parameters and
//! columns), [`Row`] with typed getters, and the `?N` → `$N` placeholder translation.
//! A getter on a column of the wrong type is a [`StoreError::Column`], never a panic: an
//! edited or foreign database must not bring the controller down.

use super::{StoreError, StoreResult};

/// A parameter or a column value. Booleans are stored as integers (0/1) on both engines;
/// PostgreSQL's own `BOOL` results (`x IS NULL`, `EXISTS`) read as `Int` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}

impl From<&Vec<u8>> for Value {
    fn from(v: &Vec<u8>) -> Value {
        Value::Blob(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Value {
        v.as_deref().into()
    }
}

/// `args![a, b, c]`: statement parameters, `?1`, `?2`, `?3`.
macro_rules! args {
    () => { &[] as &[$crate::store::value::Value] };
    ($($v:expr),+ $(,)?) => { &[$($crate::store::value::Value::from($v)),+] as &[$crate::store::value::Value] };
}
pub(crate) use args;

/// A Rust type a column reads as.
pub trait FromValue: Sized {
    const EXPECTED: &'static str;
    fn from_value(v: Value) -> Option<Self>;
}

impl FromValue for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_value(v: Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }
}

impl FromValue for bool {
    const EXPECTED: &'static str = "a boolean";
    fn from_value(v: Value) -> Option<bool> {
        match v {
            Value::Int(i) => Some(i != 0),
            _ => None,
        }
    }
}

impl FromValue for String {
    const EXPECTED: &'static str = "text";
    fn from_value(v: Value) -> Option<String> {
        match v {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    const EXPECTED: &'static str = "bytes";
    fn from_value(v: Value) -> Option<Vec<u8>> {
        match v {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(v: Value) -> Option<Option<T>> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One result row, from either engine.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a postgres::Row),
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Row::Sqlite(_) => "Row(SQLite)",
            Row::Pg(_) => "Row(PostgreSQL)",
        })
    }
}

impl Row<'_> {
    /// Column `index` as a `T`; a NULL or a value of another type where `T` does not
    /// allow it is [`StoreError::Column`].
    pub fn get<T: FromValue>(&self, index: usize) -> StoreResult<T> {
        let v = self.value(index)?;
        let found = v.kind();
        T::from_value(v).ok_or(StoreError::Column {
            index,
            expected: T::EXPECTED,
            found,
        })
    }

    fn value(&self, index: usize) -> StoreResult<Value> {
        use rusqlite::types::ValueRef;
        match self {
            Row::Sqlite(r) => Ok(match r.get_ref(index)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Int(i),
                // No REAL column exists; a float is reported as the wrong type.
                ValueRef::Real(_) => {
                    return Err(StoreError::Column {
                        index,
                        expected: "an integer, text or bytes",
                        found: "a floating-point number",
                    });
                }
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            }),
            Row::Pg(r) => Ok(r.try_get::<_, Value>(index)?),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// `?N` placeholders to PostgreSQL's `$N`, leaving string literals, quoted identifiers
/// and comments alone.
pub fn to_dollar(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    out.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    out.push(c);
                    for c in chars.by_ref() {
                        out.push(c);
                        if c == '\n' {
                            break;
                        }
                    }
                }
                '?' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
                c => out.push(c),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            to_dollar(
                "SELECT a FROM t WHERE b = ?1 AND c = '?2' AND \"d?3\" = ?12 -- ?4\n AND e = ?5"
            ),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND \"d?3\" = $12 -- ?4\n AND e = $5"
        );
        // Doubled quotes inside a literal close and reopen it: still a literal.
        assert_eq!(to_dollar("'it''s ?1' || ?2"), "'it''s ?1' || $2");
        assert_eq!(to_dollar("a ? b"), "a ? b");
    }

    #[test]
    fn values_read_back_as_their_types_or_as_a_typed_error() {
        assert_eq!(bool::from_value(Value::Int(1)), Some(true));
        assert_eq!(Option::<i64>::from_value(Value::Null), Some(None));
        assert_eq!(i64::from_value(Value::Null), None);
        assert_eq!(String::from_value(Value::Int(3)), None);
        assert_eq!(Value::from(Some("x")), Value::Text("x".into()));
        assert_eq!(Value::from(None::<i64>), Value::Null);
    }
}
