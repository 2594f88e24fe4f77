package wire

import "strconv"

// ResultCode is a server result code, as carried in byte 5 of a reply's
// message header. A ResultCode is an error: every code but ResultOK stands
// for the server's refusal, and the Err* constants let callers test with
// errors.Is.
type ResultCode uint8

// Result codes a single-record command can get (the server's numbering).
const (
	ResultOK                   ResultCode = 0
	ResultServerError          ResultCode = 1
	ResultKeyNotFound          ResultCode = 2
	ResultGenerationError      ResultCode = 3
	ResultParameterError       ResultCode = 4
	ResultKeyExists            ResultCode = 5
	ResultBinExists            ResultCode = 6
	ResultClusterKeyMismatch   ResultCode = 7
	ResultServerMemError       ResultCode = 8
	ResultTimeout              ResultCode = 9
	ResultAlwaysForbidden      ResultCode = 10
	ResultPartitionUnavailable ResultCode = 11
	ResultBinTypeError         ResultCode = 12
	ResultRecordTooBig         ResultCode = 13
	ResultKeyBusy              ResultCode = 14
	ResultScanAbort            ResultCode = 15
	ResultUnsupportedFeature   ResultCode = 16
	ResultBinNotFound          ResultCode = 17
	ResultDeviceOverload       ResultCode = 18
	ResultKeyMismatch          ResultCode = 19
	ResultInvalidNamespace     ResultCode = 20
	ResultBinNameTooLong       ResultCode = 21
	ResultFailForbidden        ResultCode = 22
	ResultElementNotFound      ResultCode = 23
	ResultElementExists        ResultCode = 24
	ResultEnterpriseOnly       ResultCode = 25
	ResultOpNotApplicable      ResultCode = 26
	ResultFilteredOut          ResultCode = 27
	ResultLostConflict         ResultCode = 28
	ResultXDRKeyBusy           ResultCode = 32
	ResultInvalidCommand       ResultCode = 54
	ResultInvalidField         ResultCode = 55
	ResultIllegalState         ResultCode = 56
	ResultNotAuthenticated     ResultCode = 80
	ResultRoleViolation        ResultCode = 81
	ResultQuotaExceeded        ResultCode = 83
)

// The server's refusals most callers test for, as errors.Is targets. They
// are ResultCode constants, so errors.Is(err, ErrKeyNotFound) holds exactly
// when err's chain holds result code 2.
const (
	// ErrServerError is an unspecified server failure (1).
	ErrServerError = ResultServerError
	// ErrKeyNotFound means the record does not exist (2).
	ErrKeyNotFound = ResultKeyNotFound
	// ErrGenerationMismatch means a generation-checked write found another
	// generation (3).
	ErrGenerationMismatch = ResultGenerationError
	// ErrParameter means the server rejected a request parameter (4).
	ErrParameter = ResultParameterError
	// ErrKeyExists means a create-only write found the record (5).
	ErrKeyExists = ResultKeyExists
	// ErrServerTimeout means the server gave up on the command within its
	// transaction TTL (9).
	ErrServerTimeout = ResultTimeout
	// ErrPartitionUnavailable means the partition has no available copy
	// (11, strong consistency).
	ErrPartitionUnavailable = ResultPartitionUnavailable
	// ErrBinTypeMismatch means an operation met a bin of another particle
	// type, e.g. an add on a string bin (12).
	ErrBinTypeMismatch = ResultBinTypeError
	// ErrRecordTooBig means the record exceeds the namespace's limit (13).
	ErrRecordTooBig = ResultRecordTooBig
	// ErrKeyBusy means too many concurrent commands on one record (14).
	ErrKeyBusy = ResultKeyBusy
	// ErrBinNotFound means a named bin does not exist (17).
	ErrBinNotFound = ResultBinNotFound
	// ErrDeviceOverload means the server's storage is overloaded (18).
	ErrDeviceOverload = ResultDeviceOverload
	// ErrInvalidNamespace means the namespace does not exist (20).
	ErrInvalidNamespace = ResultInvalidNamespace
	// ErrBinNameTooLong means a bin name exceeds MaxBinNameLen (21).
	ErrBinNameTooLong = ResultBinNameTooLong
	// ErrFilteredOut means a filter expression excluded the record (27).
	ErrFilteredOut = ResultFilteredOut
)

// name is the code's description ("" for a code this package does not know).
func (c ResultCode) name() string {
	switch c {
	case ResultOK:
		return "ok"
	case ResultServerError:
		return "server error"
	case ResultKeyNotFound:
		return "key not found"
	case ResultGenerationError:
		return "generation mismatch"
	case ResultParameterError:
		return "parameter error"
	case ResultKeyExists:
		return "key exists"
	case ResultBinExists:
		return "bin exists"
	case ResultClusterKeyMismatch:
		return "cluster key mismatch"
	case ResultServerMemError:
		return "server out of memory"
	case ResultTimeout:
		return "server timeout"
	case ResultAlwaysForbidden:
		return "operation always forbidden"
	case ResultPartitionUnavailable:
		return "partition unavailable"
	case ResultBinTypeError:
		return "bin type mismatch"
	case ResultRecordTooBig:
		return "record too big"
	case ResultKeyBusy:
		return "key busy"
	case ResultScanAbort:
		return "scan aborted"
	case ResultUnsupportedFeature:
		return "unsupported feature"
	case ResultBinNotFound:
		return "bin not found"
	case ResultDeviceOverload:
		return "device overload"
	case ResultKeyMismatch:
		return "key mismatch"
	case ResultInvalidNamespace:
		return "invalid namespace"
	case ResultBinNameTooLong:
		return "bin name too long"
	case ResultFailForbidden:
		return "operation forbidden"
	case ResultElementNotFound:
		return "element not found"
	case ResultElementExists:
		return "element exists"
	case ResultEnterpriseOnly:
		return "enterprise only"
	case ResultOpNotApplicable:
		return "operation not applicable"
	case ResultFilteredOut:
		return "filtered out"
	case ResultLostConflict:
		return "lost conflict"
	case ResultXDRKeyBusy:
		return "xdr key busy"
	case ResultInvalidCommand:
		return "invalid command"
	case ResultInvalidField:
		return "invalid field"
	case ResultIllegalState:
		return "illegal state"
	case ResultNotAuthenticated:
		return "not authenticated"
	case ResultRoleViolation:
		return "role violation"
	case ResultQuotaExceeded:
		return "quota exceeded"
	}
	return ""
}

// String names the code, e.g. "key not found (2)".
func (c ResultCode) String() string {
	name := c.name()
	if name == "" {
		name = "result code"
	}
	return name + " (" + strconv.Itoa(int(c)) + ")"
}

// Error makes a ResultCode an error: "aerospike: key not found (2)".
func (c ResultCode) Error() string { return "aerospike: " + c.String() }

// Err returns nil for ResultOK and the code itself otherwise.
func (c ResultCode) Err() error {
	if c == ResultOK {
		return nil
	}
	return c
}
