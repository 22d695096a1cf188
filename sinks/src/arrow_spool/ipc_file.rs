//! The Arrow IPC *file* format, written with one [`Encoder`] that every
//! open file of the spool shares.
//!
//! Why not arrow-ipc's `FileWriter`: each one owns its encoding context, a
//! zstd compression context whose workspace grows to the largest buffer it
//! compressed, a flatbuffer builder and a scratch buffer. The default
//! topology keeps a file open per kind (up to 23) and rotates each every
//! minute, so an idle agent held ~20 contexts and re-created one per
//! rotation: 0.4-0.75 MiB of its heap in heaptrack, and the churn that
//! fragments it (issue #12: RSS ≤ 12 MB idle). A spool writes one batch
//! at a time (its writes run one after another on the blocking pool), so
//! one context serves every file.
//!
//! The layout is the format's: magic `ARROW1` and padding, the schema
//! message, dictionary and record batch messages, the end-of-stream
//! marker, the footer (schema and the blocks' offsets), its length and the
//! magic again. Every reader of the spool (arrow-ipc's `FileReader`,
//! pyarrow in `testbed/checks/spool_pyarrow.py`, `hostflow validate
//! --spool`) reads it back.

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_ipc::convert::IpcSchemaEncoder;
use arrow_ipc::writer::{write_message, DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_ipc::{Block, CompressionType, FooterBuilder, MetadataVersion};
use arrow_schema::{ArrowError, Schema};
use flatbuffers::FlatBufferBuilder;

const MAGIC: [u8; 6] = *b"ARROW1";
/// The magic is padded to the options' alignment, 64 bytes for
/// `IpcWriteOptions::default()` (as arrow-ipc's `FileWriter` pads it).
const MAGIC_PADDING: [u8; 58] = [0; 58];
/// End of stream: the continuation marker and a zero metadata length.
const END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// The IPC options of every spool file: zstd-compressed buffers.
pub fn ipc_options() -> Result<IpcWriteOptions, ArrowError> {
    IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD))
}

/// What turns record batches into IPC messages: the options and the
/// encoding context (compression, flatbuffer and scratch buffers).
pub struct Encoder {
    generator: IpcDataGenerator,
    options: IpcWriteOptions,
    context: IpcWriteContext,
}

impl Encoder {
    /// The spool's encoding: `IpcWriteOptions::default()` (metadata V5,
    /// 64-byte alignment: what [`MAGIC_PADDING`] and the footer assume)
    /// with zstd-compressed buffers.
    pub fn zstd() -> Result<Encoder, ArrowError> {
        let options = ipc_options()?;
        Ok(Encoder { generator: IpcDataGenerator::default(), options, context: IpcWriteContext::default() })
    }
}

/// One IPC file being written.
pub struct IpcFile<W: Write> {
    writer: W,
    schema: Schema,
    /// Bytes written so far: where the next message starts.
    offset: usize,
    dictionary_blocks: Vec<Block>,
    record_blocks: Vec<Block>,
    dictionaries: DictionaryTracker,
}

impl<W: Write> IpcFile<W> {
    /// Writes the magic and the schema message.
    pub fn create(mut writer: W, schema: &Schema, encoder: &Encoder) -> Result<IpcFile<W>, ArrowError> {
        writer.write_all(&MAGIC)?;
        writer.write_all(&MAGIC_PADDING)?;
        let mut dictionaries = DictionaryTracker::new(true);
        let message =
            encoder.generator.schema_to_bytes_with_dictionary_tracker(schema, &mut dictionaries, &encoder.options);
        let (header, body) = write_message(&mut writer, message, &encoder.options)?;
        Ok(IpcFile {
            writer,
            schema: schema.clone(),
            offset: MAGIC.len() + MAGIC_PADDING.len() + header + body,
            dictionary_blocks: Vec::new(),
            record_blocks: Vec::new(),
            dictionaries,
        })
    }

    /// Appends `batch` (and any dictionary it brings) as messages.
    pub fn write(&mut self, batch: &RecordBatch, encoder: &mut Encoder) -> Result<(), ArrowError> {
        let (dictionaries, message) =
            encoder.generator.encode(batch, &mut self.dictionaries, &encoder.options, &mut encoder.context)?;
        for dictionary in dictionaries {
            let block = self.write_message(dictionary, &encoder.options)?;
            self.dictionary_blocks.push(block);
        }
        let block = self.write_message(message, &encoder.options)?;
        self.record_blocks.push(block);
        Ok(())
    }

    fn write_message(
        &mut self,
        message: arrow_ipc::writer::EncodedData,
        options: &IpcWriteOptions,
    ) -> Result<Block, ArrowError> {
        let (header, body) = write_message(&mut self.writer, message, options)?;
        let too_large = |_| ArrowError::IpcError(format!("a message header of {header} bytes"));
        let block = Block::new(self.offset as i64, i32::try_from(header).map_err(too_large)?, body as i64);
        self.offset += header + body;
        Ok(block)
    }

    /// Writes the end-of-stream marker and the footer; the file is then
    /// complete (the writer is not flushed).
    pub fn finish(&mut self) -> Result<(), ArrowError> {
        self.writer.write_all(&END_OF_STREAM)?;
        let mut fbb = FlatBufferBuilder::new();
        let dictionaries = fbb.create_vector(&self.dictionary_blocks);
        let records = fbb.create_vector(&self.record_blocks);
        // The dictionaries are written; the footer's schema numbers them
        // again from the start, as the schema message did.
        self.dictionaries.clear();
        let schema = IpcSchemaEncoder::new()
            .with_dictionary_tracker(&mut self.dictionaries)
            .schema_to_fb_offset(&mut fbb, &self.schema);
        let mut footer = FooterBuilder::new(&mut fbb);
        footer.add_version(MetadataVersion::V5);
        footer.add_schema(schema);
        footer.add_dictionaries(dictionaries);
        footer.add_recordBatches(records);
        let root = footer.finish();
        fbb.finish(root, None);
        let footer = fbb.finished_data();
        let footer_len = i32::try_from(footer.len())
            .map_err(|_| ArrowError::IpcError(format!("a footer of {} bytes", footer.len())))?;
        self.writer.write_all(footer)?;
        self.writer.write_all(&footer_len.to_le_bytes())?;
        self.writer.write_all(&MAGIC)?;
        Ok(())
    }

    pub fn get_ref(&self) -> &W {
        &self.writer
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    pub fn into_inner(self) -> W {
        self.writer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_ipc::reader::FileReader;
    use arrow_ipc::writer::FileWriter;
    use arrow_schema::{DataType, Field};

    use super::*;

    fn batch(schema: &Arc<Schema>, first: i64, n: i64) -> RecordBatch {
        let ids = Int64Array::from_iter_values(first..first + n);
        let names = StringArray::from_iter_values((first..first + n).map(|i| format!("process-{}", i % 7)));
        RecordBatch::try_new(Arc::clone(schema), vec![Arc::new(ids), Arc::new(names)]).expect("batch")
    }

    /// Byte for byte what arrow-ipc's own `FileWriter` writes with the same
    /// options, for two files written through one shared encoder in
    /// interleaved order, and read back by arrow-ipc's `FileReader`.
    #[test]
    fn files_sharing_one_encoder_are_what_arrows_file_writer_writes() {
        let metadata = [("hostflow.kind".to_owned(), "process_exec".to_owned())].into();
        let fields = vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, false)];
        let schema = Arc::new(Schema::new(fields).with_metadata(metadata));
        let batches = [batch(&schema, 0, 3), batch(&schema, 3, 500), batch(&schema, 503, 1)];

        let mut encoder = Encoder::zstd().expect("zstd");
        let mut first = IpcFile::create(Vec::new(), &schema, &encoder).expect("create");
        let mut second = IpcFile::create(Vec::new(), &schema, &encoder).expect("create");
        for batch in &batches {
            first.write(batch, &mut encoder).expect("write");
            second.write(&batch.slice(0, 1), &mut encoder).expect("write");
        }
        first.finish().expect("finish");
        second.finish().expect("finish");

        let options = ipc_options().expect("zstd");
        let reference = |batches: &[RecordBatch]| {
            let mut writer = FileWriter::try_new_with_options(Vec::new(), &schema, options.clone()).expect("writer");
            batches.iter().for_each(|b| writer.write(b).expect("write"));
            writer.finish().expect("finish");
            writer.into_inner().expect("bytes")
        };
        let first = first.into_inner();
        assert_eq!(first, reference(&batches), "the same bytes as FileWriter");
        let sliced: Vec<RecordBatch> = batches.iter().map(|b| b.slice(0, 1)).collect();
        assert_eq!(second.into_inner(), reference(&sliced));

        let read = FileReader::try_new(std::io::Cursor::new(first), None).expect("reader");
        assert_eq!(read.schema().metadata(), schema.metadata());
        let read: Vec<RecordBatch> = read.map(|b| b.expect("batch")).collect();
        assert_eq!(read, batches);
    }

    #[test]
    fn an_empty_file_has_a_schema_and_no_batches() {
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        let encoder = Encoder::zstd().expect("zstd");
        let mut file = IpcFile::create(Vec::new(), &schema, &encoder).expect("create");
        file.finish().expect("finish");
        let read = FileReader::try_new(std::io::Cursor::new(file.into_inner()), None).expect("reader");
        assert_eq!(read.num_batches(), 0);
        assert_eq!(read.schema().as_ref(), &schema);
    }
}
