//! One declaration per kind, read by every format: the security kinds (and
//! an exec's kernel attributes) write and read their values through
//! [`Columns`], in one fixed order, and each wire format is a generic
//! [`ColumnWriter`] / [`ColumnReader`] over that order.
//!
//! Why: before this, adding a few fields and one kind touched 28 files in 5
//! crates (every format had its own hand-written mapping per kind). Now a
//! field is added in three places that sit next to each other or are
//! checked against each other: the struct and its `write_columns` /
//! `read_columns` (the kind's file here), one line of the column
//! declaration in `schemas/src/columns.rs` (names, types, protobuf tags),
//! and one field in `schemas/proto/security.proto`. Tests compare the
//! three (the sinks' round trips and the schemas descriptor test), so a
//! line forgotten in one fails a test instead of shipping.
//!
//! The order is positional: column *i* of the declaration is the *i*-th
//! call on the writer. Names live in the declaration, not here, so this
//! crate stays free of any wire format.

use std::net::IpAddr;
use std::sync::Arc;

use super::{EventMeta, ProcessKey};

/// The value types a column can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    U16,
    U32,
    U64,
    I32,
    I64,
    Bool,
    Str,
    StrList,
}

/// Receives one record's values in declaration order.
pub trait ColumnWriter {
    fn u16(&mut self, value: u16);
    fn u32(&mut self, value: u32);
    fn u64(&mut self, value: u64);
    fn i32(&mut self, value: i32);
    fn i64(&mut self, value: i64);
    fn bool(&mut self, value: bool);
    fn str(&mut self, value: &str);
    fn str_list(&mut self, values: &[Arc<str>]);
}

/// Why a record could not be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// The source ran out of columns, or a column holds another type.
    #[error("column {index}: expected {expected:?}")]
    Type { index: usize, expected: ColumnType },
    /// A text column holds a value the kind does not know.
    #[error("column {index}: {value:?} is not a valid {what}")]
    Value { index: usize, what: &'static str, value: String },
}

/// Hands out one record's values in declaration order.
pub trait ColumnReader {
    /// Position of the next column (for error messages).
    fn index(&self) -> usize;
    fn u16(&mut self) -> Result<u16, ColumnError>;
    fn u32(&mut self) -> Result<u32, ColumnError>;
    fn u64(&mut self) -> Result<u64, ColumnError>;
    fn i32(&mut self) -> Result<i32, ColumnError>;
    fn i64(&mut self) -> Result<i64, ColumnError>;
    fn bool(&mut self) -> Result<bool, ColumnError>;
    fn str(&mut self) -> Result<Arc<str>, ColumnError>;
    fn str_list(&mut self) -> Result<Vec<Arc<str>>, ColumnError>;
}

impl dyn ColumnReader + '_ {
    /// A text column parsed by `parse`, named `what` in the error.
    pub fn parsed<T>(&mut self, what: &'static str, parse: impl Fn(&str) -> Option<T>) -> Result<T, ColumnError> {
        let index = self.index();
        let text = self.str()?;
        parse(&text).ok_or_else(|| ColumnError::Value { index, what, value: text.to_string() })
    }

    /// An address written by [`ColumnWriter::str`] of its text form.
    pub fn ip(&mut self) -> Result<IpAddr, ColumnError> {
        self.parsed("IP address", |text| text.parse().ok())
    }

    /// A process key written by [`write_key`].
    pub fn key(&mut self) -> Result<ProcessKey, ColumnError> {
        Ok(ProcessKey { pid: self.u32()?, start_time_ns: self.u64()? })
    }
}

/// Writes a process key as its two columns (`pid`, `start_time_ns`, or
/// the declaration's names for another role).
pub fn write_key(w: &mut dyn ColumnWriter, key: &ProcessKey) {
    w.u32(key.pid);
    w.u64(key.start_time_ns);
}

/// A record whose values every format reads and writes through one
/// declaration. `meta` (`event_id`, `ts_ns`) is the format's business: it
/// is not among the columns.
pub trait Columns: Sized {
    fn write_columns(&self, w: &mut dyn ColumnWriter);
    fn read_columns(meta: EventMeta, r: &mut dyn ColumnReader) -> Result<Self, ColumnError>;
}

/// Records the types a record writes, in order: what tests compare with
/// the declaration in `schemas`.
#[derive(Debug, Default)]
pub struct TypeRecorder(pub Vec<ColumnType>);

impl ColumnWriter for TypeRecorder {
    fn u16(&mut self, _: u16) {
        self.0.push(ColumnType::U16);
    }
    fn u32(&mut self, _: u32) {
        self.0.push(ColumnType::U32);
    }
    fn u64(&mut self, _: u64) {
        self.0.push(ColumnType::U64);
    }
    fn i32(&mut self, _: i32) {
        self.0.push(ColumnType::I32);
    }
    fn i64(&mut self, _: i64) {
        self.0.push(ColumnType::I64);
    }
    fn bool(&mut self, _: bool) {
        self.0.push(ColumnType::Bool);
    }
    fn str(&mut self, _: &str) {
        self.0.push(ColumnType::Str);
    }
    fn str_list(&mut self, _: &[Arc<str>]) {
        self.0.push(ColumnType::StrList);
    }
}

/// A typed value, as [`ValueRecorder`] keeps it.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnValue {
    U16(u16),
    U32(u32),
    U64(u64),
    I32(i32),
    I64(i64),
    Bool(bool),
    Str(Arc<str>),
    StrList(Vec<Arc<str>>),
}

/// Keeps every value a record writes; as a [`ColumnReader`] it hands them
/// back, so `read(write(x)) == x` can be tested without any format.
#[derive(Debug, Default)]
pub struct ValueRecorder {
    pub values: Vec<ColumnValue>,
    next: usize,
}

impl ColumnWriter for ValueRecorder {
    fn u16(&mut self, value: u16) {
        self.values.push(ColumnValue::U16(value));
    }
    fn u32(&mut self, value: u32) {
        self.values.push(ColumnValue::U32(value));
    }
    fn u64(&mut self, value: u64) {
        self.values.push(ColumnValue::U64(value));
    }
    fn i32(&mut self, value: i32) {
        self.values.push(ColumnValue::I32(value));
    }
    fn i64(&mut self, value: i64) {
        self.values.push(ColumnValue::I64(value));
    }
    fn bool(&mut self, value: bool) {
        self.values.push(ColumnValue::Bool(value));
    }
    fn str(&mut self, value: &str) {
        self.values.push(ColumnValue::Str(value.into()));
    }
    fn str_list(&mut self, values: &[Arc<str>]) {
        self.values.push(ColumnValue::StrList(values.to_vec()));
    }
}

macro_rules! take {
    ($self:ident, $variant:ident, $ty:expr) => {{
        let index = $self.next;
        match $self.values.get(index) {
            Some(ColumnValue::$variant(value)) => {
                $self.next += 1;
                Ok(value.clone())
            }
            _ => Err(ColumnError::Type { index, expected: $ty }),
        }
    }};
}

impl ColumnReader for ValueRecorder {
    fn index(&self) -> usize {
        self.next
    }
    fn u16(&mut self) -> Result<u16, ColumnError> {
        take!(self, U16, ColumnType::U16)
    }
    fn u32(&mut self) -> Result<u32, ColumnError> {
        take!(self, U32, ColumnType::U32)
    }
    fn u64(&mut self) -> Result<u64, ColumnError> {
        take!(self, U64, ColumnType::U64)
    }
    fn i32(&mut self) -> Result<i32, ColumnError> {
        take!(self, I32, ColumnType::I32)
    }
    fn i64(&mut self) -> Result<i64, ColumnError> {
        take!(self, I64, ColumnType::I64)
    }
    fn bool(&mut self) -> Result<bool, ColumnError> {
        take!(self, Bool, ColumnType::Bool)
    }
    fn str(&mut self) -> Result<Arc<str>, ColumnError> {
        take!(self, Str, ColumnType::Str)
    }
    fn str_list(&mut self) -> Result<Vec<Arc<str>>, ColumnError> {
        take!(self, StrList, ColumnType::StrList)
    }
}
