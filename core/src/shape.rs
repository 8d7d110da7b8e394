//! What a job's `{id, data}` stand for: queue-xec hands the task the payload exactly as pushed
//! (a JSON round trip, types kept). A payload of the usual shape `{id, data}` travels as a job
//! with that id and data; what the id and data alone cannot say (the id was a number, or the
//! data is the whole payload) travels with the job as its [`PayloadShape`], sealed with its
//! data, so every worker (Node, the embedded runtime of the CLI and Python) hands its task the
//! same value.

/// How a task receives a job (see the module's documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PayloadShape {
    /// `{id, data}`: the id as text, the data parsed from its JSON.
    #[default]
    Job,
    /// `{id, data}` with the id as the number it was pushed as.
    NumericId,
    /// The data is the whole payload: the task receives it as it is (an object with other
    /// keys, a number, a string, an array).
    Whole,
}

impl PayloadShape {
    /// The name bindings use: `"job"`, `"numericId"`, `"whole"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadShape::Job => "job",
            PayloadShape::NumericId => "numericId",
            PayloadShape::Whole => "whole",
        }
    }

    /// The shape of a name from [`as_str`](Self::as_str); `None` for another name.
    pub fn from_name(name: &str) -> Option<PayloadShape> {
        match name {
            "job" => Some(PayloadShape::Job),
            "numericId" => Some(PayloadShape::NumericId),
            "whole" => Some(PayloadShape::Whole),
            _ => None,
        }
    }
}

/// The byte that starts a job body carrying a shape. JSON text never starts with NUL, so a body
/// without it is the data alone (the shape [`PayloadShape::Job`], as stored before shapes were).
const SHAPE_MARK: u8 = 0;

/// What goes before the data in a job body: `[0, tag]` when the shape is not `Job`, else
/// nothing. The sealed body is this, then the data ([`TransferKey::seal_parts`] joins them, so a
/// big payload is not copied to build it).
///
/// [`TransferKey::seal_parts`]: crate::crypto::TransferKey::seal_parts
pub(crate) fn body_prefix(shape: PayloadShape) -> &'static [u8] {
    match shape {
        PayloadShape::Job => &[],
        PayloadShape::NumericId => &[SHAPE_MARK, b'n'],
        PayloadShape::Whole => &[SHAPE_MARK, b'w'],
    }
}

/// The plain job body that is sealed: the data, after [`body_prefix`].
#[cfg(test)]
pub(crate) fn encode_body(shape: PayloadShape, data: &str) -> Vec<u8> {
    [body_prefix(shape), data.as_bytes()].concat()
}

/// The shape and data of an opened job body. A mark with a tag this version does not know
/// leaves the body whole, as `Job` data.
pub(crate) fn decode_body(mut body: Vec<u8>) -> (PayloadShape, Vec<u8>) {
    let shape = match body.as_slice() {
        [SHAPE_MARK, b'n', ..] => PayloadShape::NumericId,
        [SHAPE_MARK, b'w', ..] => PayloadShape::Whole,
        _ => return (PayloadShape::Job, body),
    };
    // In place: a big payload is moved down two bytes, not copied to a new buffer.
    body.drain(..2);
    (shape, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_plain_data_is_a_job() {
        for shape in [
            PayloadShape::Job,
            PayloadShape::NumericId,
            PayloadShape::Whole,
        ] {
            for data in ["{\"x\":1}", "\"text\t\"", "5", ""] {
                assert_eq!(
                    decode_body(encode_body(shape, data)),
                    (shape, data.as_bytes().to_vec())
                );
            }
            assert_eq!(PayloadShape::from_name(shape.as_str()), Some(shape));
        }
        assert_eq!(encode_body(PayloadShape::Job, "[1]"), b"[1]");
        assert_eq!(
            decode_body(b"\0zrest".to_vec()),
            (PayloadShape::Job, b"\0zrest".to_vec())
        );
    }
}
