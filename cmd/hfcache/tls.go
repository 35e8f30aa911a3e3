package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// tlsSetup is the node's TLS: the listeners' server configuration (nil:
// plain HTTP) and the client configuration for talking to peers.
type tlsSetup struct {
	scheme string
	server *tls.Config
	peer   *tls.Config
}

// loadTLS reads the certificates named by the TLS flags.
func loadTLS(f serveFlags) (tlsSetup, error) {
	s := tlsSetup{scheme: "http"}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return s, errors.New("--tls-cert and --tls-key go together")
	}
	if (f.peerTLSCert == "") != (f.peerTLSKey == "") {
		return s, errors.New("--peer-tls-cert and --peer-tls-key go together")
	}
	if f.tlsCert == "" {
		if f.peerTLSCA != "" || f.peerTLSCert != "" {
			return s, errors.New("--peer-tls-* needs --tls-cert: peers talk over the client port")
		}
		return s, nil
	}
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return s, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	s.scheme = "https"
	s.server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.peer = &tls.Config{MinVersion: tls.VersionTLS12}
	if f.peerTLSCA != "" {
		pem, err := os.ReadFile(f.peerTLSCA)
		if err != nil {
			return s, fmt.Errorf("--peer-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return s, fmt.Errorf("--peer-tls-ca %s: no PEM certificate in it", f.peerTLSCA)
		}
		// Clients need no certificate; peers must present one the CA signed.
		s.server.ClientCAs = pool
		s.server.ClientAuth = tls.VerifyClientCertIfGiven
		s.peer.RootCAs = pool
	}
	if f.peerTLSCert != "" {
		pc, err := tls.LoadX509KeyPair(f.peerTLSCert, f.peerTLSKey)
		if err != nil {
			return s, fmt.Errorf("--peer-tls-cert/--peer-tls-key: %w", err)
		}
		s.peer.Certificates = []tls.Certificate{pc}
	}
	return s, nil
}
