// Package wire encodes and decodes Aerospike's record messages: protocol
// message type 3 (AS_MSG), the one every single-record command (get, put,
// delete, touch, exists, operate) and its reply travel in.
//
// A message is an 8-byte protocol header followed by a body:
//
//	proto header (8 bytes)
//	+---------+------+-------------------------------------------+
//	| version | type | body length (48 bits, big-endian)         |
//	|  (2)    | (3)  |                                           |
//	+---------+------+-------------------------------------------+
//	 0         1      2                                         7
//
//	message header (22 bytes, the first bytes of the body)
//	 0  header size (22)
//	 1  info1   read bits            (Info1*)
//	 2  info2   write bits           (Info2*)
//	 3  info3   more bits            (Info3*)
//	 4  info4   transaction bits     (unused by this package)
//	 5  result code                  (replies; 0 in requests)
//	 6  generation       uint32      (expected one in requests, current one in replies)
//	10  record TTL       uint32      (seconds in requests; void time in replies)
//	14  transaction TTL  uint32      (server-side timeout in milliseconds)
//	18  field count      uint16
//	20  op count         uint16
//
//	field:      size uint32 (1 + len(data)) | type uint8 | data
//	operation:  size uint32 (4 + len(name) + len(value)) | op type uint8 |
//	            particle type uint8 | version uint8 (0) | name length uint8 |
//	            name | value
//
// All integers are big-endian. A request names its record with fields
// (namespace, set, digest, optionally the user key) and carries one
// operation per bin to write or read; the reply carries the result code,
// the record's generation and void time and one operation per bin
// returned.
//
// Bin values are particles (Value): integers and floats as 8 big-endian
// bytes, booleans as one byte, strings and blobs as their bytes, lists and
// maps as MessagePack in which every string or blob element starts with
// its particle-type byte (3 for strings, 4 for blobs), as the server and
// the official clients encode them, so that any Aerospike client reads
// them back as lists and maps.
//
// Decoders never trust their input: every count and length is checked
// against the bytes present before anything is allocated, nesting is
// bounded, and a bad message gives a *DecodeError wrapping ErrTruncated,
// ErrMalformed, ErrTooLarge or ErrUnsupported — never a panic.
//
// Server result codes are ResultCode values, which are errors themselves:
// errors.Is(err, wire.ErrKeyNotFound) holds for any error whose chain holds
// result code 2, and errors.As(err, &code) retrieves the code.
package wire
