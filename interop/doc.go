// Package interop checks shmkit's info-protocol parsers, digest math and
// simulated cluster against the official Aerospike Go client. It is a
// separate module so that the main module never depends on the client.
package interop
