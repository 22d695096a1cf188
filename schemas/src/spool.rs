//! The on-disk layout of the Arrow spool, shared by the spool sink that writes
//! it, the replay source and the query command that read it.
//!
//! ```text
//! <spool dir>/<kind>/<kind>-<seq>.arrow        finished: an Arrow IPC file with its footer
//! <spool dir>/<kind>/<kind>-<seq>.arrow.tmp    being written (or left by a crash)
//! <spool dir>/<kind>/quarantine/               unreadable leftovers, set aside
//! ```
//!
//! `<kind>` is one of [`KINDS`](crate::KINDS) and names the file's schema
//! ([`schema_for`](crate::schema_for)); `<seq>` is ten decimal digits, so
//! name order is write order. Readers only ever open finished files: a file
//! without its footer cannot be opened as an IPC file, which is why the writer
//! renames only once the footer is written.
//!
//! Time: every row keeps the engine's `ts_ns` (CLOCK_BOOTTIME nanoseconds:
//! the clock of the eBPF programs' `bpf_ktime_get_boot_ns`, of `/proc` start
//! times and of the agent's own events). Each file's schema metadata carries
//! the wall-clock anchor under [`WALL_CLOCK_ANCHOR_KEY`]: UTC nanoseconds
//! since the Unix epoch at `ts_ns` = 0 (realtime − boottime, sampled when the
//! file was opened), so `ts_ns + anchor` is the row's wall-clock time. The
//! anchor is metadata only: the columns, and so every reader that looks them
//! up by name and type, are unchanged; files written before it existed have
//! none.

/// Schema metadata key of a spool file's wall-clock anchor (decimal UTC
/// nanoseconds since the Unix epoch at `ts_ns` = 0; see the module docs).
pub const WALL_CLOCK_ANCHOR_KEY: &str = "hostflow.wall_clock_anchor_ns";

/// `schema` with `anchor_ns` recorded as its wall-clock anchor.
pub fn with_wall_clock_anchor(schema: &arrow_schema::Schema, anchor_ns: i64) -> arrow_schema::Schema {
    let mut metadata = schema.metadata().clone();
    metadata.insert(WALL_CLOCK_ANCHOR_KEY.to_owned(), anchor_ns.to_string());
    arrow_schema::Schema::new_with_metadata(schema.fields().clone(), metadata)
}

/// The wall-clock anchor recorded in a spool file's schema metadata, if any
/// (and if it is a number).
pub fn wall_clock_anchor(metadata: &std::collections::HashMap<String, String>) -> Option<i64> {
    metadata.get(WALL_CLOCK_ANCHOR_KEY)?.parse().ok()
}

/// The finished name of file `seq` of `kind`.
pub fn finished_name(kind: &str, seq: u64) -> String {
    format!("{kind}-{seq:010}.arrow")
}

/// The name of file `seq` of `kind` while it is written.
pub fn tmp_name(kind: &str, seq: u64) -> String {
    format!("{kind}-{seq:010}.arrow.tmp")
}

/// The sequence number of a spool file name of `kind` (finished or tmp).
pub fn parse_seq(kind: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(kind)?.strip_prefix('-')?;
    let digits = rest.strip_suffix(".arrow.tmp").or_else(|| rest.strip_suffix(".arrow"))?;
    (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// Whether `name` is a finished file of `kind` (not a tmp file).
pub fn is_finished(kind: &str, name: &str) -> bool {
    name.ends_with(".arrow") && parse_seq(kind, name).is_some()
}

/// The finished files of `kind` under `spool_dir`, oldest first, with their
/// sequence numbers. A missing kind directory is an empty list; any other
/// error reading the directory is returned.
pub fn finished_files(spool_dir: &std::path::Path, kind: &str) -> std::io::Result<Vec<(u64, std::path::PathBuf)>> {
    let dir = spool_dir.join(kind);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".arrow") {
            if let Some(seq) = parse_seq(kind, name) {
                files.push((seq, entry.path()));
            }
        }
    }
    files.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(files)
}

/// What [`verify_file`] found in a sound file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSummary {
    /// Record batches in the file.
    pub batches: usize,
    /// Rows over all batches.
    pub rows: u64,
    /// The file's wall-clock anchor ([`WALL_CLOCK_ANCHOR_KEY`]), if it has one.
    pub wall_clock_anchor_ns: Option<i64>,
}

/// Rows a single record batch of the spool may declare; the sink writes at
/// most `batch_rows` (≤ 1 M) at once.
const MAX_BATCH_ROWS: i64 = 1 << 24;

/// Bytes a single buffer may declare it decompresses to.
const MAX_BUFFER_BYTES: i64 = 1 << 30;

/// Checks that `path` is a finished spool file of `schema` that a reader can
/// decode without being led astray by corrupt lengths.
///
/// Why this exists: arrow's IPC reader trusts the lengths inside a file. A
/// flipped byte in a block's body length, or in the 8-byte "uncompressed
/// size" that prefixes every zstd buffer, makes it allocate that many bytes
/// first, and an allocation of exabytes aborts the process — no error, no
/// unwinding. So every reader (the query command, the replay source) runs
/// this first, which reads only the footer, each batch's message header and
/// 8 bytes per buffer, and checks every offset, length and declared size
/// against the file and sane bounds. It does not decompress: a file that
/// passes can still fail to decode, as an ordinary error.
pub fn verify_file(path: &std::path::Path, schema: &arrow_schema::Schema) -> Result<FileSummary, String> {
    verify(path, schema, false)
}

/// [`verify_file`], also accepting a file of an older layout of the kind:
/// one whose columns are a prefix of `schema`'s (columns are only ever
/// appended, see `ARROW_SCHEMA_VERSION`). For readers that look columns up
/// by name and know what an absent column meant (the replay source: a
/// version-2 exec has no `has_attributes`, so no attributes); the query
/// command keeps [`verify_file`], since its tables have the current
/// columns.
pub fn verify_file_or_older(path: &std::path::Path, schema: &arrow_schema::Schema) -> Result<FileSummary, String> {
    verify(path, schema, true)
}

fn verify(path: &std::path::Path, schema: &arrow_schema::Schema, older: bool) -> Result<FileSummary, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let verified = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_open_file(&file, schema, older)));
    verified.unwrap_or_else(|_| Err("the file's metadata is malformed".to_owned()))
}

fn verify_open_file(file: &std::fs::File, schema: &arrow_schema::Schema, older: bool) -> Result<FileSummary, String> {
    use std::os::unix::fs::FileExt as _;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let read_at = |offset: u64, len: u64| -> Result<Vec<u8>, String> {
        let end =
            offset.checked_add(len).filter(|end| *end <= size).ok_or("a length points past the end of the file")?;
        let mut buf = vec![0; usize::try_from(end - offset).map_err(|e| e.to_string())?];
        file.read_exact_at(&mut buf, offset).map_err(|e| e.to_string())?;
        Ok(buf)
    };
    if size < 18 || read_at(0, 6)? != b"ARROW1" {
        return Err("not an Arrow IPC file".to_owned());
    }
    let tail = read_at(size - 10, 10)?;
    if &tail[4..] != b"ARROW1" {
        return Err("no footer (the file was not finished)".to_owned());
    }
    let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let footer_start = (size - 10).checked_sub(footer_len).filter(|start| *start >= 8).ok_or("bad footer length")?;
    let footer_bytes = read_at(footer_start, footer_len)?;
    let footer = arrow_ipc::root_as_footer(&footer_bytes).map_err(|e| format!("bad footer: {e}"))?;
    let file_schema = arrow_ipc::convert::fb_to_schema(footer.schema().ok_or("the footer has no schema")?);
    // Columns are only ever appended (`ARROW_SCHEMA_VERSION`), so a file
    // of an older layout holds a prefix of the kind's columns.
    let (file_fields, fields) = (file_schema.fields(), schema.fields());
    let prefix = older && file_fields.len() >= 2 && file_fields.len() <= fields.len();
    let matches = match prefix {
        true => file_fields[..] == fields[..file_fields.len()],
        false => file_fields == fields,
    };
    if !matches {
        return Err("its columns are not this kind's schema".to_owned());
    }
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err("dictionary batches, which the spool never writes".to_owned());
    }
    let mut summary =
        FileSummary { batches: 0, rows: 0, wall_clock_anchor_ns: wall_clock_anchor(file_schema.metadata()) };
    for block in footer.recordBatches().into_iter().flatten() {
        let (offset, meta_len, body_len) = (block.offset(), i64::from(block.metaDataLength()), block.bodyLength());
        let in_file = |v: i64| u64::try_from(v).ok().filter(|v| *v <= footer_start);
        let (Some(offset), Some(meta_len), Some(body_len)) = (in_file(offset), in_file(meta_len), in_file(body_len))
        else {
            return Err("a record batch's offset or length is out of range".to_owned());
        };
        if meta_len < 8 || offset.saturating_add(meta_len).saturating_add(body_len) > footer_start {
            return Err("a record batch's offset or length is out of range".to_owned());
        }
        let meta = read_at(offset, meta_len)?;
        let message = match meta[..4] == [0xff; 4] {
            true => &meta[8..],
            false => &meta[4..],
        };
        let message = arrow_ipc::root_as_message(message).map_err(|e| format!("bad batch header: {e}"))?;
        let batch = message.header_as_record_batch().ok_or("a block is not a record batch")?;
        let body_start = offset + meta_len;
        check_batch(&batch, file_schema.fields(), body_len, &|start| read_at(body_start + start, 8))?;
        summary.batches += 1;
        summary.rows += batch.length().unsigned_abs();
    }
    Ok(summary)
}

/// Checks one record batch's header against `fields` and its body of
/// `body_len` bytes; `prefix_at(offset)` reads the 8 bytes at `offset` in
/// the body (a compressed buffer's declared size). Shared by finished files
/// and the unfinished streams recovery reads, so both refuse the same
/// lengths before arrow's reader would trust them.
fn check_batch(
    batch: &arrow_ipc::RecordBatch<'_>,
    fields: &arrow_schema::Fields,
    body_len: u64,
    prefix_at: &dyn Fn(u64) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    if !(0..=MAX_BATCH_ROWS).contains(&batch.length()) {
        return Err(format!("a record batch declares {} rows", batch.length()));
    }
    // The spool's schemas have no view types (so no variadic buffers)
    // and a fixed number of nodes and buffers; arrow's reader asserts
    // rather than errs on some of these mismatches.
    if batch.variadicBufferCounts().is_some_and(|counts| !counts.is_empty()) {
        return Err("a record batch declares variadic buffers".to_owned());
    }
    let (nodes, buffers) = layout(fields);
    if batch.nodes().map_or(0, |n| n.len()) != nodes || batch.buffers().map_or(0, |b| b.len()) != buffers {
        return Err("a record batch's columns do not match the schema".to_owned());
    }
    for node in batch.nodes().into_iter().flatten() {
        if !(0..=MAX_BATCH_ROWS * 64).contains(&node.length()) {
            return Err("a column declares an impossible length".to_owned());
        }
        // Every spool column is non-null; a null count is corruption
        // (and arrow's reader panics on one without a validity buffer).
        if node.null_count() != 0 {
            return Err("a column declares nulls, which the spool never writes".to_owned());
        }
    }
    let compressed = batch.compression().is_some();
    for buffer in batch.buffers().into_iter().flatten() {
        let (Ok(start), Ok(len)) = (u64::try_from(buffer.offset()), u64::try_from(buffer.length())) else {
            return Err("a buffer's offset or length is negative".to_owned());
        };
        if start.saturating_add(len) > body_len {
            return Err("a buffer lies outside its record batch".to_owned());
        }
        if compressed && len > 0 {
            let prefix = prefix_at(start).map_err(|_| "a compressed buffer is cut short")?;
            let declared = i64::from_le_bytes(prefix.try_into().map_err(|_| "a compressed buffer is cut short")?);
            if declared != -1 && !(0..=MAX_BUFFER_BYTES).contains(&declared) {
                return Err(format!("a compressed buffer declares {declared} bytes"));
            }
        }
    }
    Ok(())
}

/// How much of an IPC stream (an unfinished spool file after its header)
/// is whole and safe to hand to arrow's `StreamReader`: the schema
/// message, which must have `schema`'s columns (or, with `older`, a prefix
/// of them), and then every record batch up to the first one that is cut
/// short or declares a length [`check_batch`] refuses. Returns the byte
/// length of that prefix and the number of whole batches in it.
///
/// Why: recovery reads what a crash left, and a torn or corrupt length
/// would otherwise make the reader allocate what it declares and abort the
/// process (see [`verify_file`]).
pub fn safe_stream_prefix(stream: &[u8], schema: &arrow_schema::Schema, older: bool) -> Result<(usize, usize), String> {
    let checked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream_prefix(stream, schema.fields(), older)));
    checked.unwrap_or_else(|_| Err("the stream's metadata is malformed".to_owned()))
}

fn stream_prefix(stream: &[u8], fields: &arrow_schema::Fields, older: bool) -> Result<(usize, usize), String> {
    let mut at = 0usize;
    let mut batches = 0usize;
    let mut stream_fields: Option<arrow_schema::Fields> = None;
    loop {
        // A message: 0xFFFFFFFF, a little-endian i32 metadata length (or,
        // before format 0.15, the length alone), the metadata, the body.
        let word = |at: usize| stream.get(at..at + 4).map(|b| [b[0], b[1], b[2], b[3]]);
        let Some(first) = word(at) else { break };
        let (len_at, meta_at) = if first == [0xff; 4] { (at + 4, at + 8) } else { (at, at + 4) };
        let Some(len) = word(len_at) else { break };
        let meta_len = i32::from_le_bytes(len);
        if meta_len <= 0 {
            break; // end of stream, or a torn length
        }
        let Some(meta) = stream.get(meta_at..meta_at + meta_len as usize) else { break };
        let Ok(message) = arrow_ipc::root_as_message(meta) else { break };
        let Ok(body_len) = u64::try_from(message.bodyLength()) else { break };
        let body_at = meta_at + meta_len as usize;
        let Some(body_end) = usize::try_from(body_len).ok().and_then(|l| body_at.checked_add(l)) else { break };
        if body_end > stream.len() {
            break;
        }
        match &stream_fields {
            None => {
                let Some(fb) = message.header_as_schema() else {
                    return Err("the stream does not start with a schema".to_owned());
                };
                let found = arrow_ipc::convert::fb_to_schema(fb).fields().clone();
                let prefix = older && found.len() >= 2 && found.len() <= fields.len();
                let matches = match prefix {
                    true => found[..] == fields[..found.len()],
                    false => found == *fields,
                };
                if !matches {
                    return Err("schema differs from this kind's schema".to_owned());
                }
                stream_fields = Some(found);
            }
            Some(found) => {
                let Some(batch) = message.header_as_record_batch() else { break };
                let body = &stream[body_at..body_end];
                let prefix_at = |start: u64| -> Result<Vec<u8>, String> {
                    let start = usize::try_from(start).map_err(|e| e.to_string())?;
                    body.get(start..start + 8).map(<[u8]>::to_vec).ok_or_else(|| "cut short".to_owned())
                };
                if check_batch(&batch, found, body_len, &prefix_at).is_err() {
                    break;
                }
                batches += 1;
            }
        }
        at = body_end;
    }
    if stream_fields.is_none() {
        return Err("no readable schema".to_owned());
    }
    Ok((at, batches))
}

/// (field nodes, buffers) an IPC record batch of `fields` carries: one node
/// per field and per nested child; validity + values for a fixed-width
/// column, validity + offsets + data for a string, validity + offsets plus
/// the child's for a list.
fn layout(fields: &arrow_schema::Fields) -> (usize, usize) {
    use arrow_schema::DataType;
    fields.iter().fold((0, 0), |(nodes, buffers), field| {
        let (n, b) = match field.data_type() {
            DataType::Utf8 | DataType::Binary => (1, 3),
            DataType::List(child) => {
                let (n, b) = layout(&arrow_schema::Fields::from(vec![child.clone()]));
                (1 + n, 2 + b)
            }
            _ => (1, 2),
        };
        (nodes + n, buffers + b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        assert_eq!(finished_name("sketch", 7), "sketch-0000000007.arrow");
        assert_eq!(parse_seq("sketch", &finished_name("sketch", 7)), Some(7));
        assert_eq!(parse_seq("sketch", &tmp_name("sketch", 42)), Some(42));
        assert!(is_finished("sketch", "sketch-0000000007.arrow"));
        assert!(!is_finished("sketch", "sketch-0000000007.arrow.tmp"));
        for stranger in
            ["sketch-7.arrow", "sketch-00000000x7.arrow", "process_exec-0000000007.arrow", "sketch-0000000007.parquet"]
        {
            assert_eq!(parse_seq("sketch", stranger), None, "{stranger}");
        }
    }

    #[test]
    fn finished_files_are_listed_in_write_order() {
        let dir = std::env::temp_dir().join(format!("hostflow-spool-layout-{}", std::process::id()));
        let kind_dir = dir.join("sketch");
        std::fs::create_dir_all(&kind_dir).expect("mkdir");
        for name in
            [finished_name("sketch", 10), finished_name("sketch", 2), tmp_name("sketch", 11), "notes.txt".into()]
        {
            std::fs::write(kind_dir.join(name), b"").expect("write");
        }
        let files = finished_files(&dir, "sketch").expect("list");
        assert_eq!(files.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![2, 10]);
        assert!(finished_files(&dir, "process_exec").expect("missing kind").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// `process_exit`'s columns before the process context (layout 3): a
    /// prefix of the current schema, so readers of older files accept it.
    fn exit_schema_without_context() -> std::sync::Arc<arrow_schema::Schema> {
        let current = crate::schema_for("process_exit").expect("schema");
        let fields = current.fields().iter().take_while(|f| f.name() != crate::arrow::HAS_CONTEXT).cloned();
        std::sync::Arc::new(arrow_schema::Schema::new_with_metadata(
            fields.collect::<Vec<_>>(),
            current.metadata().clone(),
        ))
    }

    /// A spool-like file of `batches` batches of `rows` rows of the
    /// `process_exit` schema (without the context columns),
    /// zstd-compressed as the sink writes it.
    fn exit_file(batches: usize, rows: usize) -> Vec<u8> {
        use arrow_array::{ArrayRef, Int32Array, RecordBatch, UInt32Array, UInt64Array};
        let schema = exit_schema_without_context();
        let options = arrow_ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
            .expect("zstd");
        let mut writer = arrow_ipc::writer::FileWriter::try_new_with_options(Vec::new(), &schema, options).expect("w");
        for b in 0..batches {
            let ids: Vec<u64> = (0..rows as u64).map(|i| (b * rows) as u64 + i).collect();
            let columns: Vec<ArrayRef> = vec![
                std::sync::Arc::new(UInt64Array::from(ids.clone())),
                std::sync::Arc::new(UInt64Array::from(ids.iter().map(|i| i * 1000).collect::<Vec<_>>())),
                std::sync::Arc::new(UInt32Array::from(ids.iter().map(|i| *i as u32 % 4000).collect::<Vec<_>>())),
                std::sync::Arc::new(UInt64Array::from(vec![7; rows])),
                std::sync::Arc::new(Int32Array::from(ids.iter().map(|i| (*i % 3) as i32).collect::<Vec<_>>())),
                std::sync::Arc::new(UInt64Array::from(ids.iter().map(|i| i * 7_000).collect::<Vec<_>>())),
            ];
            writer.write(&RecordBatch::try_new(schema.clone(), columns).expect("batch")).expect("write");
        }
        writer.finish().expect("finish");
        writer.into_inner().expect("bytes")
    }

    fn write_temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("hostflow-verify-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn a_sound_file_is_summarised_and_a_cut_one_refused() {
        let schema = exit_schema_without_context();
        let bytes = exit_file(3, 500);
        let path = write_temp("sound", &bytes);
        assert_eq!(verify_file(&path, &schema), Ok(FileSummary { batches: 3, rows: 1500, wall_clock_anchor_ns: None }));
        let other = crate::schema_for("process_exec").expect("schema");
        assert_eq!(verify_file(&path, &other), Err("its columns are not this kind's schema".to_owned()));
        std::fs::write(&path, &bytes[..bytes.len() - 100]).expect("cut");
        assert_eq!(verify_file(&path, &schema), Err("no footer (the file was not finished)".to_owned()));
        std::fs::remove_file(&path).expect("cleanup");
    }

    #[test]
    fn the_wall_clock_anchor_is_schema_metadata_and_the_columns_stay() {
        let schema = crate::schema_for("process_exit").expect("schema");
        let anchor = 1_796_300_000_123_456_789;
        let anchored = with_wall_clock_anchor(&schema, anchor);
        assert_eq!(wall_clock_anchor(anchored.metadata()), Some(anchor));
        assert_eq!(wall_clock_anchor(schema.metadata()), None);
        assert_eq!(anchored.fields(), schema.fields());
        assert_eq!(anchored.metadata()[crate::arrow::KIND_KEY], "process_exit", "the kind's metadata is kept");
        let mut writer = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &anchored).expect("writer");
        writer.finish().expect("finish");
        let path = write_temp("anchored", &writer.into_inner().expect("bytes"));
        let summary = verify_file(&path, &schema);
        assert_eq!(summary, Ok(FileSummary { batches: 0, rows: 0, wall_clock_anchor_ns: Some(anchor) }));
        std::fs::remove_file(&path).expect("cleanup");
    }

    /// A spool-like `process_exec` file of layout 2 (before the exec
    /// attributes were appended): a `List<Utf8>` column (`argv`) and
    /// booleans, `rows` rows per batch.
    fn exec_file(batches: usize, rows: usize) -> Vec<u8> {
        use arrow_array::builder::{ListBuilder, StringBuilder};
        use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
        use std::sync::Arc;
        let current = crate::schema_for("process_exec").expect("schema");
        let version_2 = current.fields().iter().take_while(|f| f.name() != "has_attributes").cloned();
        let schema = Arc::new(arrow_schema::Schema::new_with_metadata(
            version_2.collect::<Vec<_>>(),
            current.metadata().clone(),
        ));
        let options = arrow_ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
            .expect("zstd");
        let mut writer = arrow_ipc::writer::FileWriter::try_new_with_options(Vec::new(), &schema, options).expect("w");
        for b in 0..batches {
            let ids: Vec<u64> = (0..rows as u64).map(|i| (b * rows) as u64 + i).collect();
            let u32s = |f: &dyn Fn(u64) -> u32| Arc::new(UInt32Array::from_iter_values(ids.iter().map(|&i| f(i))));
            let u64s = |f: &dyn Fn(u64) -> u64| Arc::new(UInt64Array::from_iter_values(ids.iter().map(|&i| f(i))));
            let mut argv = ListBuilder::new(StringBuilder::new()).with_field(crate::arrow::argv_item());
            for &i in &ids {
                for arg in 0..i % 4 {
                    argv.values().append_value(format!("arg {arg} of {i}"));
                }
                argv.append(true);
            }
            let columns: Vec<ArrayRef> = vec![
                u64s(&|i| i),
                u64s(&|i| i * 1000),
                u32s(&|i| i as u32 % 4000),
                u64s(&|_| 7),
                u32s(&|_| 1),
                u32s(&|i| i as u32 % 2),
                u32s(&|i| i as u32 % 3),
                u64s(&|i| 0x1000 + i % 5),
                Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("comm{}", i % 3)))),
                Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("/bin/x{}", i % 3)))),
                Arc::new(argv.finish()),
                Arc::new(BooleanArray::from_iter(ids.iter().map(|i| Some(i % 7 == 0)))),
            ];
            writer.write(&RecordBatch::try_new(schema.clone(), columns).expect("batch")).expect("write");
        }
        writer.finish().expect("finish");
        writer.into_inner().expect("bytes")
    }

    #[test]
    fn a_file_with_a_list_column_is_summarised() {
        let schema = crate::schema_for("process_exec").expect("schema");
        let path = write_temp("list", &exec_file(2, 50));
        let summary = FileSummary { batches: 2, rows: 100, wall_clock_anchor_ns: None };
        assert_eq!(verify_file_or_older(&path, &schema), Ok(summary), "a layout-2 file is a prefix of layout 3");
        assert_eq!(verify_file(&path, &schema), Err("its columns are not this kind's schema".to_owned()));
        let exit = crate::schema_for("process_exit").expect("schema");
        assert!(verify_file_or_older(&path, &exit).is_err(), "a prefix of its own kind only");
        std::fs::remove_file(&path).expect("cleanup");
    }

    /// Every single-byte corruption of a file is either refused here or
    /// decodes (or fails to) as an ordinary error: none may abort a reader
    /// by making it allocate a corrupt length. Runs the real arrow reader on
    /// every file that passes.
    fn check_no_corruption_aborts(kind: &str, bytes: &[u8]) {
        let schema = crate::schema_for(kind).expect("schema");
        let path = write_temp(&format!("corrupt-{kind}"), bytes);
        let (mut refused, mut passed, mut panicked) = (0, 0, Vec::new());
        for position in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut corrupt = bytes.to_vec();
                corrupt[position] ^= flip;
                std::fs::write(&path, &corrupt).expect("write");
                if verify_file_or_older(&path, &schema).is_err() {
                    refused += 1;
                    continue;
                }
                passed += 1;
                let decode = std::panic::catch_unwind(|| {
                    let file = std::fs::File::open(&path).expect("open");
                    if let Ok(reader) = arrow_ipc::reader::FileReader::try_new(file, None) {
                        reader.for_each(drop);
                    }
                });
                if decode.is_err() {
                    panicked.push(position);
                }
            }
        }
        std::fs::remove_file(&path).expect("cleanup");
        assert!(refused > 100 && passed > 100, "{kind}: refused {refused}, passed {passed}");
        assert!(panicked.is_empty(), "{kind}: arrow's reader panicked on corruptions at bytes {panicked:?}");
    }

    #[test]
    fn no_single_byte_corruption_can_abort_a_reader() {
        check_no_corruption_aborts("process_exit", &exit_file(2, 300));
    }

    #[test]
    fn no_single_byte_corruption_of_a_list_column_can_abort_a_reader() {
        check_no_corruption_aborts("process_exec", &exec_file(2, 40));
    }
}
