package schemas

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// KafkaSecurity says how immeter's Kafka clients authenticate and encrypt:
// SASL (SCRAM-SHA-512 or PLAIN) and TLS. The zero value is plaintext
// without authentication.
type KafkaSecurity struct {
	SASLMechanism string // "", "SCRAM-SHA-512" or "PLAIN" (KAFKA_SASL_MECHANISM)
	Username      string // KAFKA_SASL_USERNAME
	Password      string // KAFKA_SASL_PASSWORD_FILE holds it
	TLS           bool   // KAFKA_TLS
	CAFile        string // PEM CA bundle to verify brokers; default the system's (KAFKA_TLS_CA_FILE)
	CertFile      string // PEM client certificate, with KeyFile (KAFKA_TLS_CERT_FILE)
	KeyFile       string // PEM client key (KAFKA_TLS_KEY_FILE)
	ServerName    string // name to verify in the broker's certificate; default its host (KAFKA_TLS_SERVER_NAME)
}

// SASL mechanisms immeter speaks.
const (
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLPlain       = "PLAIN"
)

// Validate reports the first bad field, named as in the environment; it
// loads the files, so that a missing one stops the program at start.
func (s KafkaSecurity) Validate() error {
	_, err := s.Transport("")
	return err
}

// Transport returns a kafka-go transport with s applied.
func (s KafkaSecurity) Transport(clientID string) (*kafka.Transport, error) {
	tr := &kafka.Transport{ClientID: clientID}
	if err := s.Apply(tr); err != nil {
		return nil, err
	}
	return tr, nil
}

// Apply sets tr's SASL mechanism and TLS configuration from s.
func (s KafkaSecurity) Apply(tr *kafka.Transport) error {
	m, err := s.mechanism()
	if err != nil {
		return err
	}
	t, err := s.tlsConfig()
	if err != nil {
		return err
	}
	tr.SASL, tr.TLS = m, t
	return nil
}

func (s KafkaSecurity) mechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
		if s.Username != "" || s.Password != "" {
			return nil, fmt.Errorf("KAFKA_SASL_MECHANISM: required with KAFKA_SASL_USERNAME (%s or %s)", SASLScramSHA512, SASLPlain)
		}
		return nil, nil
	case SASLScramSHA512:
		if s.Username == "" {
			return nil, fmt.Errorf("KAFKA_SASL_USERNAME: required with KAFKA_SASL_MECHANISM=%s", s.SASLMechanism)
		}
		m, err := scram.Mechanism(scram.SHA512, s.Username, s.Password)
		if err != nil {
			return nil, fmt.Errorf("KAFKA_SASL_USERNAME: %w", err)
		}
		return m, nil
	case SASLPlain:
		if s.Username == "" {
			return nil, fmt.Errorf("KAFKA_SASL_USERNAME: required with KAFKA_SASL_MECHANISM=%s", s.SASLMechanism)
		}
		if !s.TLS {
			// PLAIN sends the password as it is: never without TLS.
			return nil, fmt.Errorf("KAFKA_SASL_MECHANISM: %s sends the password in clear: set KAFKA_TLS=true", SASLPlain)
		}
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	default:
		return nil, fmt.Errorf("KAFKA_SASL_MECHANISM: want %s or %s; got %q", SASLScramSHA512, SASLPlain, s.SASLMechanism)
	}
}

// TLSConfig returns the TLS configuration towards the brokers; nil without
// TLS.
func (s KafkaSecurity) TLSConfig() (*tls.Config, error) { return s.tlsConfig() }

func (s KafkaSecurity) tlsConfig() (*tls.Config, error) {
	if !s.TLS {
		for name, v := range map[string]string{"KAFKA_TLS_CA_FILE": s.CAFile, "KAFKA_TLS_CERT_FILE": s.CertFile,
			"KAFKA_TLS_KEY_FILE": s.KeyFile, "KAFKA_TLS_SERVER_NAME": s.ServerName} {
			if v != "" {
				return nil, fmt.Errorf("%s: set, but KAFKA_TLS is off", name)
			}
		}
		return nil, nil
	}
	return loadTLS("KAFKA_TLS", s.CAFile, s.CertFile, s.KeyFile, s.ServerName)
}

// loadTLS builds a client TLS configuration from PEM files; prefix names
// the settings in errors (KAFKA_TLS, CLICKHOUSE_TLS).
func loadTLS(prefix, caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s_CA_FILE: %w", prefix, err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s_CA_FILE: %s: no PEM certificate in it", prefix, caFile)
		}
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s_CERT_FILE, %s_KEY_FILE: %w", prefix, prefix, err)
		}
		t.Certificates = []tls.Certificate{cert}
	case certFile != "":
		return nil, fmt.Errorf("%s_KEY_FILE: required with %s_CERT_FILE", prefix, prefix)
	case keyFile != "":
		return nil, fmt.Errorf("%s_CERT_FILE: required with %s_KEY_FILE", prefix, prefix)
	}
	return t, nil
}
