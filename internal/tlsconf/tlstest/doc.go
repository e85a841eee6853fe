// Package tlstest makes throwaway certificate authorities and certificates
// for tests: ECDSA P-256 keys, PEM encoded, valid from a minute ago for a
// day unless told otherwise.
//
// NewCA makes an authority, CA.Issue (or CA.Loopback, for a node on
// 127.0.0.1) a certificate it signs, and the Write methods put them in
// files for a process to read.
package tlstest
