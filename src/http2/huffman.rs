//! The Huffman code of HPACK (RFC 7541 §5.2, Appendix B): a static code, built from a large
//! sample of HTTP headers, that spends 5 bits on `a`, `e`, `0`, `/` and the like and up to 30
//! bits on bytes headers rarely hold.
//!
//! A string literal is sent Huffman-coded when its `H` bit is set (§5.2). The codes are
//! written most significant bit first and packed without gaps; the last octet is filled with
//! the first bits of the code for EOS (end of string), which are all ones. Three rules make a
//! decoder strict (§5.2): padding longer than 7 bits, padding that is not all ones, and a
//! decoded EOS are each a decoding error. Each is an [`HuffmanError`] variant.
//!
//! The code is *canonical*: the codes of one length are consecutive numbers, in the order of
//! their symbols, and each length's first code follows on from the last code of the length
//! before (checked by `the_code_is_canonical` below). So the decoder needs no tree: for each
//! length it keeps the first code, how many codes there are and where their symbols start in
//! a list sorted by length; all three are computed from [`CODES`] at compile time. Reading a
//! code is then a bit at a time, comparing against the first code of the length read so far.
//! A production decoder would read 4 or 8 bits at a time through a state table (nghttp2 does);
//! this one is the version a reader can check against the RFC.

#![forbid(unsafe_code)]

use std::fmt;

/// The code of each symbol, `(code, length in bits)`, the code right-aligned: symbols 0 to 255
/// are the octets, 256 is EOS. RFC 7541 Appendix B, row by row.
#[rustfmt::skip]
pub const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),       // 0
    (0x7fffd8, 23),     // 1
    (0xfffffe2, 28),    // 2
    (0xfffffe3, 28),    // 3
    (0xfffffe4, 28),    // 4
    (0xfffffe5, 28),    // 5
    (0xfffffe6, 28),    // 6
    (0xfffffe7, 28),    // 7
    (0xfffffe8, 28),    // 8
    (0xffffea, 24),     // 9
    (0x3ffffffc, 30),   // 10
    (0xfffffe9, 28),    // 11
    (0xfffffea, 28),    // 12
    (0x3ffffffd, 30),   // 13
    (0xfffffeb, 28),    // 14
    (0xfffffec, 28),    // 15
    (0xfffffed, 28),    // 16
    (0xfffffee, 28),    // 17
    (0xfffffef, 28),    // 18
    (0xffffff0, 28),    // 19
    (0xffffff1, 28),    // 20
    (0xffffff2, 28),    // 21
    (0x3ffffffe, 30),   // 22
    (0xffffff3, 28),    // 23
    (0xffffff4, 28),    // 24
    (0xffffff5, 28),    // 25
    (0xffffff6, 28),    // 26
    (0xffffff7, 28),    // 27
    (0xffffff8, 28),    // 28
    (0xffffff9, 28),    // 29
    (0xffffffa, 28),    // 30
    (0xffffffb, 28),    // 31
    (0x14, 6),          // ' '
    (0x3f8, 10),        // '!'
    (0x3f9, 10),        // '"'
    (0xffa, 12),        // '#'
    (0x1ff9, 13),       // '$'
    (0x15, 6),          // '%'
    (0xf8, 8),          // '&'
    (0x7fa, 11),        // "'"
    (0x3fa, 10),        // '('
    (0x3fb, 10),        // ')'
    (0xf9, 8),          // '*'
    (0x7fb, 11),        // '+'
    (0xfa, 8),          // ','
    (0x16, 6),          // '-'
    (0x17, 6),          // '.'
    (0x18, 6),          // '/'
    (0x0, 5),           // '0'
    (0x1, 5),           // '1'
    (0x2, 5),           // '2'
    (0x19, 6),          // '3'
    (0x1a, 6),          // '4'
    (0x1b, 6),          // '5'
    (0x1c, 6),          // '6'
    (0x1d, 6),          // '7'
    (0x1e, 6),          // '8'
    (0x1f, 6),          // '9'
    (0x5c, 7),          // ':'
    (0xfb, 8),          // ';'
    (0x7ffc, 15),       // '<'
    (0x20, 6),          // '='
    (0xffb, 12),        // '>'
    (0x3fc, 10),        // '?'
    (0x1ffa, 13),       // '@'
    (0x21, 6),          // 'A'
    (0x5d, 7),          // 'B'
    (0x5e, 7),          // 'C'
    (0x5f, 7),          // 'D'
    (0x60, 7),          // 'E'
    (0x61, 7),          // 'F'
    (0x62, 7),          // 'G'
    (0x63, 7),          // 'H'
    (0x64, 7),          // 'I'
    (0x65, 7),          // 'J'
    (0x66, 7),          // 'K'
    (0x67, 7),          // 'L'
    (0x68, 7),          // 'M'
    (0x69, 7),          // 'N'
    (0x6a, 7),          // 'O'
    (0x6b, 7),          // 'P'
    (0x6c, 7),          // 'Q'
    (0x6d, 7),          // 'R'
    (0x6e, 7),          // 'S'
    (0x6f, 7),          // 'T'
    (0x70, 7),          // 'U'
    (0x71, 7),          // 'V'
    (0x72, 7),          // 'W'
    (0xfc, 8),          // 'X'
    (0x73, 7),          // 'Y'
    (0xfd, 8),          // 'Z'
    (0x1ffb, 13),       // '['
    (0x7fff0, 19),      // '\\'
    (0x1ffc, 13),       // ']'
    (0x3ffc, 14),       // '^'
    (0x22, 6),          // '_'
    (0x7ffd, 15),       // '`'
    (0x3, 5),           // 'a'
    (0x23, 6),          // 'b'
    (0x4, 5),           // 'c'
    (0x24, 6),          // 'd'
    (0x5, 5),           // 'e'
    (0x25, 6),          // 'f'
    (0x26, 6),          // 'g'
    (0x27, 6),          // 'h'
    (0x6, 5),           // 'i'
    (0x74, 7),          // 'j'
    (0x75, 7),          // 'k'
    (0x28, 6),          // 'l'
    (0x29, 6),          // 'm'
    (0x2a, 6),          // 'n'
    (0x7, 5),           // 'o'
    (0x2b, 6),          // 'p'
    (0x76, 7),          // 'q'
    (0x2c, 6),          // 'r'
    (0x8, 5),           // 's'
    (0x9, 5),           // 't'
    (0x2d, 6),          // 'u'
    (0x77, 7),          // 'v'
    (0x78, 7),          // 'w'
    (0x79, 7),          // 'x'
    (0x7a, 7),          // 'y'
    (0x7b, 7),          // 'z'
    (0x7ffe, 15),       // '{'
    (0x7fc, 11),        // '|'
    (0x3ffd, 14),       // '}'
    (0x1ffd, 13),       // '~'
    (0xffffffc, 28),    // 127
    (0xfffe6, 20),      // 128
    (0x3fffd2, 22),     // 129
    (0xfffe7, 20),      // 130
    (0xfffe8, 20),      // 131
    (0x3fffd3, 22),     // 132
    (0x3fffd4, 22),     // 133
    (0x3fffd5, 22),     // 134
    (0x7fffd9, 23),     // 135
    (0x3fffd6, 22),     // 136
    (0x7fffda, 23),     // 137
    (0x7fffdb, 23),     // 138
    (0x7fffdc, 23),     // 139
    (0x7fffdd, 23),     // 140
    (0x7fffde, 23),     // 141
    (0xffffeb, 24),     // 142
    (0x7fffdf, 23),     // 143
    (0xffffec, 24),     // 144
    (0xffffed, 24),     // 145
    (0x3fffd7, 22),     // 146
    (0x7fffe0, 23),     // 147
    (0xffffee, 24),     // 148
    (0x7fffe1, 23),     // 149
    (0x7fffe2, 23),     // 150
    (0x7fffe3, 23),     // 151
    (0x7fffe4, 23),     // 152
    (0x1fffdc, 21),     // 153
    (0x3fffd8, 22),     // 154
    (0x7fffe5, 23),     // 155
    (0x3fffd9, 22),     // 156
    (0x7fffe6, 23),     // 157
    (0x7fffe7, 23),     // 158
    (0xffffef, 24),     // 159
    (0x3fffda, 22),     // 160
    (0x1fffdd, 21),     // 161
    (0xfffe9, 20),      // 162
    (0x3fffdb, 22),     // 163
    (0x3fffdc, 22),     // 164
    (0x7fffe8, 23),     // 165
    (0x7fffe9, 23),     // 166
    (0x1fffde, 21),     // 167
    (0x7fffea, 23),     // 168
    (0x3fffdd, 22),     // 169
    (0x3fffde, 22),     // 170
    (0xfffff0, 24),     // 171
    (0x1fffdf, 21),     // 172
    (0x3fffdf, 22),     // 173
    (0x7fffeb, 23),     // 174
    (0x7fffec, 23),     // 175
    (0x1fffe0, 21),     // 176
    (0x1fffe1, 21),     // 177
    (0x3fffe0, 22),     // 178
    (0x1fffe2, 21),     // 179
    (0x7fffed, 23),     // 180
    (0x3fffe1, 22),     // 181
    (0x7fffee, 23),     // 182
    (0x7fffef, 23),     // 183
    (0xfffea, 20),      // 184
    (0x3fffe2, 22),     // 185
    (0x3fffe3, 22),     // 186
    (0x3fffe4, 22),     // 187
    (0x7ffff0, 23),     // 188
    (0x3fffe5, 22),     // 189
    (0x3fffe6, 22),     // 190
    (0x7ffff1, 23),     // 191
    (0x3ffffe0, 26),    // 192
    (0x3ffffe1, 26),    // 193
    (0xfffeb, 20),      // 194
    (0x7fff1, 19),      // 195
    (0x3fffe7, 22),     // 196
    (0x7ffff2, 23),     // 197
    (0x3fffe8, 22),     // 198
    (0x1ffffec, 25),    // 199
    (0x3ffffe2, 26),    // 200
    (0x3ffffe3, 26),    // 201
    (0x3ffffe4, 26),    // 202
    (0x7ffffde, 27),    // 203
    (0x7ffffdf, 27),    // 204
    (0x3ffffe5, 26),    // 205
    (0xfffff1, 24),     // 206
    (0x1ffffed, 25),    // 207
    (0x7fff2, 19),      // 208
    (0x1fffe3, 21),     // 209
    (0x3ffffe6, 26),    // 210
    (0x7ffffe0, 27),    // 211
    (0x7ffffe1, 27),    // 212
    (0x3ffffe7, 26),    // 213
    (0x7ffffe2, 27),    // 214
    (0xfffff2, 24),     // 215
    (0x1fffe4, 21),     // 216
    (0x1fffe5, 21),     // 217
    (0x3ffffe8, 26),    // 218
    (0x3ffffe9, 26),    // 219
    (0xffffffd, 28),    // 220
    (0x7ffffe3, 27),    // 221
    (0x7ffffe4, 27),    // 222
    (0x7ffffe5, 27),    // 223
    (0xfffec, 20),      // 224
    (0xfffff3, 24),     // 225
    (0xfffed, 20),      // 226
    (0x1fffe6, 21),     // 227
    (0x3fffe9, 22),     // 228
    (0x1fffe7, 21),     // 229
    (0x1fffe8, 21),     // 230
    (0x7ffff3, 23),     // 231
    (0x3fffea, 22),     // 232
    (0x3fffeb, 22),     // 233
    (0x1ffffee, 25),    // 234
    (0x1ffffef, 25),    // 235
    (0xfffff4, 24),     // 236
    (0xfffff5, 24),     // 237
    (0x3ffffea, 26),    // 238
    (0x7ffff4, 23),     // 239
    (0x3ffffeb, 26),    // 240
    (0x7ffffe6, 27),    // 241
    (0x3ffffec, 26),    // 242
    (0x3ffffed, 26),    // 243
    (0x7ffffe7, 27),    // 244
    (0x7ffffe8, 27),    // 245
    (0x7ffffe9, 27),    // 246
    (0x7ffffea, 27),    // 247
    (0x7ffffeb, 27),    // 248
    (0xffffffe, 28),    // 249
    (0x7ffffec, 27),    // 250
    (0x7ffffed, 27),    // 251
    (0x7ffffee, 27),    // 252
    (0x7ffffef, 27),    // 253
    (0x7fffff0, 27),    // 254
    (0x3ffffee, 26),    // 255
    (0x3fffffff, 30),   // EOS
];

/// The symbol that only padding may begin to spell (§5.2).
const EOS: u16 = 256;

/// The longest code (EOS and a few control bytes), in bits.
const MAX_CODE_LEN: usize = 30;

/// §5.2: "A padding strictly longer than 7 bits MUST be treated as a decoding error."
const MAX_PADDING_BITS: u32 = 7;

/// The canonical decoding tables, per code length `0..=30`: the first code of that length,
/// how many codes have it, and where their symbols start in `symbols`.
struct Canonical {
    first: [u32; MAX_CODE_LEN + 1],
    count: [u32; MAX_CODE_LEN + 1],
    offset: [usize; MAX_CODE_LEN + 1],
    /// Every symbol, sorted by code length, then by symbol (which is code order: canonical).
    symbols: [u16; 257],
}

/// Builds [`Canonical`] from [`CODES`]; runs at compile time.
const fn canonical() -> Canonical {
    let mut table = Canonical {
        first: [0; MAX_CODE_LEN + 1],
        count: [0; MAX_CODE_LEN + 1],
        offset: [0; MAX_CODE_LEN + 1],
        symbols: [0; 257],
    };
    let mut next = 0;
    let mut len = 1;
    while len <= MAX_CODE_LEN {
        table.offset[len] = next;
        let mut symbol = 0;
        while symbol < CODES.len() {
            let (code, bits) = CODES[symbol];
            if bits as usize == len {
                if table.count[len] == 0 {
                    table.first[len] = code;
                }
                table.count[len] += 1;
                table.symbols[next] = symbol as u16;
                next += 1;
            }
            symbol += 1;
        }
        len += 1;
    }
    table
}

static CANONICAL: Canonical = canonical();

/// Why a Huffman-coded string was refused (RFC 7541 §5.2). Each is a decoding error, which
/// HTTP/2 answers with COMPRESSION_ERROR (RFC 9113 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HuffmanError {
    /// The string held the EOS symbol.
    Eos,
    /// More than 7 bits were left over after the last symbol.
    PaddingTooLong,
    /// The leftover bits were not all ones (not a prefix of EOS).
    PaddingNotEos,
}

impl fmt::Display for HuffmanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HuffmanError::Eos => "a Huffman-coded string holds EOS",
            HuffmanError::PaddingTooLong => "Huffman padding longer than 7 bits",
            HuffmanError::PaddingNotEos => "Huffman padding that is not the start of EOS",
        })
    }
}

/// How many octets `input` takes Huffman-coded: the encoder's "is it shorter?" question,
/// answered without encoding.
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: usize = input.iter().map(|&byte| CODES[byte as usize].1 as usize).sum();
    bits.div_ceil(8)
}

/// Appends `input` Huffman-coded to `out`, padded with the first bits of EOS (§5.2).
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(input));
    // Bits not yet written, right-aligned in `pending`; never more than 7 + 30 of them.
    let mut pending: u64 = 0;
    let mut pending_bits = 0;
    for &byte in input {
        let (code, bits) = CODES[byte as usize];
        pending = (pending << bits) | u64::from(code);
        pending_bits += u32::from(bits);
        while pending_bits >= 8 {
            pending_bits -= 8;
            out.push((pending >> pending_bits) as u8);
        }
    }
    if pending_bits > 0 {
        // §5.2: "the most significant bits of the code corresponding to the EOS
        // (end-of-string) symbol are used" as padding: EOS starts with 30 ones.
        let padding = 8 - pending_bits;
        out.push(((pending << padding) as u8) | ((1u8 << padding) - 1));
    }
}

/// Appends the decoded `input` to `out`, or says why it is not a valid Huffman string.
/// Allocates at most `input.len() * 8 / 5` octets: no code is shorter than 5 bits.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    out.reserve(input.len() * 8 / 5);
    let table = &CANONICAL;
    // The bits of the code read so far, and how many.
    let mut code: u32 = 0;
    let mut len = 0;
    for &byte in input {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            // The code is complete (every 30-bit string starts with some code), so a symbol
            // is always found by 30 bits; were it not, this is still an error, not a panic.
            let (Some(&first), Some(&count), Some(&offset)) =
                (table.first.get(len), table.count.get(len), table.offset.get(len))
            else {
                return Err(HuffmanError::Eos);
            };
            // Canonical: a code of this length is a symbol if it lies within the length's run.
            let rank = code.wrapping_sub(first);
            if count > 0 && code >= first && rank < count {
                let symbol = table.symbols[offset + rank as usize];
                // §5.2: "A Huffman-encoded string literal containing the EOS symbol MUST be
                // treated as a decoding error."
                if symbol == EOS {
                    return Err(HuffmanError::Eos);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
            }
        }
    }
    // §5.2: "Upon decoding, an incomplete code at the end of the encoded data is to be
    // considered as padding and discarded."
    if len as u32 > MAX_PADDING_BITS {
        return Err(HuffmanError::PaddingTooLong);
    }
    // §5.2: "A padding not corresponding to the most significant bits of the code for the
    // EOS symbol MUST be treated as a decoding error."
    if code != (1 << len) - 1 {
        return Err(HuffmanError::PaddingNotEos);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    /// Every Huffman-coded string of RFC 7541 Appendix C.4 and C.6, with its text.
    const RFC_STRINGS: [(&str, &str); 10] = [
        ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
        ("a8eb 1064 9cbf", "no-cache"),
        ("25a8 49e9 5ba9 7d7f", "custom-key"),
        ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
        ("6402", "302"),
        ("aec3 771a 4b", "private"),
        ("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3", "https://www.example.com"),
        ("9bd9 ab", "gzip"),
        (
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
    ];

    #[test]
    fn appendix_c_strings_decode() {
        for (coded, text) in RFC_STRINGS {
            let mut out = Vec::new();
            assert_eq!(decode(&hex(coded), &mut out), Ok(()), "{text}");
            assert_eq!(out, text.as_bytes());
        }
    }

    #[test]
    fn appendix_c_strings_encode() {
        for (coded, text) in RFC_STRINGS {
            let mut out = Vec::new();
            encode(text.as_bytes(), &mut out);
            assert_eq!(out, hex(coded), "{text}");
            assert_eq!(encoded_len(text.as_bytes()), out.len());
        }
    }

    /// Appendix B: the code is canonical, which the decoder relies on; and complete (the
    /// Kraft sum of its lengths is exactly 1), so every bit string starts with a code.
    #[test]
    fn the_code_is_canonical() {
        let mut order: Vec<usize> = (0..257).collect();
        order.sort_by_key(|&symbol| (CODES[symbol].1, symbol));
        let mut expected = 0u32;
        let mut previous_len = CODES[order[0]].1;
        for (i, &symbol) in order.iter().enumerate() {
            let (code, len) = CODES[symbol];
            if i > 0 {
                expected = (expected + 1) << (len - previous_len);
            }
            assert_eq!(code, expected, "symbol {symbol}");
            previous_len = len;
        }
        let kraft: u64 = CODES.iter().map(|&(_, len)| 1u64 << (30 - len)).sum();
        assert_eq!(kraft, 1 << 30);
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut coded = Vec::new();
        encode(&all, &mut coded);
        let mut out = Vec::new();
        assert_eq!(decode(&coded, &mut out), Ok(()));
        assert_eq!(out, all);
    }

    #[test]
    fn empty_string_is_empty() {
        let mut out = Vec::new();
        encode(b"", &mut out);
        assert!(out.is_empty());
        assert_eq!(decode(&[], &mut out), Ok(()));
        assert!(out.is_empty());
    }

    /// §5.2: "A Huffman-encoded string literal containing the EOS symbol MUST be treated as a
    /// decoding error." EOS is 30 ones; four 0xff octets hold it with 2 bits to spare.
    #[test]
    fn section_5_2_eos_in_string_is_an_error() {
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], &mut Vec::new()), Err(HuffmanError::Eos));
        // After a symbol, too: 'a' is 00011 (5 bits), then 30 ones.
        assert_eq!(decode(&[0x1f, 0xff, 0xff, 0xff, 0xff], &mut Vec::new()), Err(HuffmanError::Eos));
    }

    /// §5.2: "A padding strictly longer than 7 bits MUST be treated as a decoding error."
    #[test]
    fn section_5_2_padding_longer_than_7_bits_is_an_error() {
        // '0' is 00000 (5 bits); then 11 ones of padding over two octets.
        assert_eq!(decode(&[0x07, 0xff], &mut Vec::new()), Err(HuffmanError::PaddingTooLong));
        // A whole octet of ones and nothing else: 8 bits of padding.
        assert_eq!(decode(&[0xff], &mut Vec::new()), Err(HuffmanError::PaddingTooLong));
    }

    /// §5.2: "A padding not corresponding to the most significant bits of the code for the
    /// EOS symbol MUST be treated as a decoding error."
    #[test]
    fn section_5_2_padding_not_eos_prefix_is_an_error() {
        // '0' (00000) then padding 110: not all ones.
        assert_eq!(decode(&[0x06], &mut Vec::new()), Err(HuffmanError::PaddingNotEos));
        // '0' then padding 111: fine.
        let mut out = Vec::new();
        assert_eq!(decode(&[0x07], &mut out), Ok(()));
        assert_eq!(out, b"0");
    }
}
