//! CIFAR-10, binary version (<https://www.cs.toronto.edu/~kriz/cifar.html>): each file
//! is a sequence of 3,073-byte records, a label byte then 1,024 red, 1,024 green and
//! 1,024 blue bytes, each plane row-major 32x32. Any number of records per file.

pub const SIDE: usize = 32;
pub const RECORD: usize = 1 + 3 * SIDE * SIDE;
pub const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
pub const TEST_FILE: &str = "test_batch.bin";
pub const META_FILE: &str = "batches.meta.txt";
pub const DEFAULT_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Splits one file's bytes into labels and `[C, H, W]` pixels, appending to the given
/// vectors only if the whole file is valid.
pub fn parse_records(bytes: &[u8], labels: &mut Vec<u8>, pixels: &mut Vec<u8>) -> Result<(), String> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(format!(
            "is {} bytes, not a positive multiple of the {RECORD}-byte CIFAR-10 record: truncated or not a CIFAR-10 \
             binary batch; delete it and run the data step again",
            bytes.len()
        ));
    }
    if let Some((i, rec)) = bytes.chunks_exact(RECORD).enumerate().find(|(_, r)| r[0] > 9) {
        return Err(format!("record {i} has label {}, expected 0..9", rec[0]));
    }
    for rec in bytes.chunks_exact(RECORD) {
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok(())
}

/// The class names of `batches.meta.txt`: one per line, blank lines ignored.
pub fn parse_meta(text: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != 10 {
        return Err(format!("lists {} class names, expected 10", names.len()));
    }
    Ok(names)
}
