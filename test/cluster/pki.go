package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI is the generated public-key infrastructure of one local cluster: PEM files in Dir.
// Every key is ECDSA P-256 (fast to generate; every component here accepts it).
type PKI struct {
	Dir string
}

// Path returns the path of a file of the PKI, such as "ca.crt".
func (p PKI) Path(name string) string { return filepath.Join(p.Dir, name) }

// CA returns the cluster CA certificate in PEM.
func (p PKI) CA() ([]byte, error) { return os.ReadFile(p.Path("ca.crt")) }

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// certSpec describes one leaf certificate.
type certSpec struct {
	name     string // file stem: name.crt, name.key
	cn       string
	orgs     []string
	usage    x509.ExtKeyUsage
	dnsNames []string
	ips      []net.IP
}

// newPKI writes a cluster CA, a front-proxy CA and the leaf certificates the control plane
// and the metrics servers need into dir. ServingNames are extra DNS names of aggregated API
// servers (like "metrics-server.kube-system.svc"), each given its own serving certificate
// named after the service ("<svc>-serving").
func newPKI(dir string, services []string) (PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return PKI{}, fmt.Errorf("create pki dir: %w", err)
	}
	p := PKI{Dir: dir}
	ca, err := p.writeCA("ca", "hindsight-lab-ca")
	if err != nil {
		return PKI{}, err
	}
	fp, err := p.writeCA("front-proxy-ca", "hindsight-lab-front-proxy-ca")
	if err != nil {
		return PKI{}, err
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	leaves := []struct {
		ca   keyPair
		spec certSpec
	}{
		{ca, certSpec{name: "apiserver", cn: "kube-apiserver", usage: x509.ExtKeyUsageServerAuth,
			dnsNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips:      []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}}},
		{ca, certSpec{name: "admin", cn: "admin", orgs: []string{"system:masters"}, usage: x509.ExtKeyUsageClientAuth}},
		{ca, certSpec{name: "controller-manager", cn: "system:kube-controller-manager", usage: x509.ExtKeyUsageClientAuth}},
		{ca, certSpec{name: "kwok", cn: "kwok", orgs: []string{"system:masters"}, usage: x509.ExtKeyUsageClientAuth}},
		{ca, certSpec{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", usage: x509.ExtKeyUsageClientAuth}},
		{fp, certSpec{name: "front-proxy-client", cn: "front-proxy-client", usage: x509.ExtKeyUsageClientAuth}},
		{ca, certSpec{name: "loopback-serving", cn: "127.0.0.1", usage: x509.ExtKeyUsageServerAuth, dnsNames: []string{"localhost"}, ips: loopback}},
	}
	for _, svc := range services {
		leaves = append(leaves, struct {
			ca   keyPair
			spec certSpec
		}{ca, certSpec{name: svc + "-serving", cn: svc, usage: x509.ExtKeyUsageServerAuth,
			dnsNames: []string{svc + ".kube-system.svc", "localhost"}, ips: loopback}})
	}
	for _, l := range leaves {
		if err := p.writeLeaf(l.ca, l.spec); err != nil {
			return PKI{}, err
		}
	}
	// The service-account token signing key pair.
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return PKI{}, fmt.Errorf("generate service-account key: %w", err)
	}
	if err := p.writeKey("sa.key", sa); err != nil {
		return PKI{}, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return PKI{}, fmt.Errorf("marshal service-account public key: %w", err)
	}
	if err := writePEM(p.Path("sa.pub"), "PUBLIC KEY", pub, 0o644); err != nil {
		return PKI{}, err
	}
	return p, nil
}

// ClientCert writes a client certificate for user cn in groups orgs, signed by the cluster
// CA, and returns the paths of its certificate and key.
func (p PKI) ClientCert(name, cn string, orgs ...string) (certFile, keyFile string, err error) {
	ca, err := p.loadCA("ca")
	if err != nil {
		return "", "", err
	}
	if err := p.writeLeaf(ca, certSpec{name: name, cn: cn, orgs: orgs, usage: x509.ExtKeyUsageClientAuth}); err != nil {
		return "", "", err
	}
	return p.Path(name + ".crt"), p.Path(name + ".key"), nil
}

func (p PKI) writeCA(name, cn string) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, fmt.Errorf("generate %s key: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return keyPair{}, fmt.Errorf("sign %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return keyPair{}, fmt.Errorf("parse %s: %w", name, err)
	}
	if err := writePEM(p.Path(name+".crt"), "CERTIFICATE", der, 0o644); err != nil {
		return keyPair{}, err
	}
	if err := p.writeKey(name+".key", key); err != nil {
		return keyPair{}, err
	}
	return keyPair{cert: cert, key: key}, nil
}

func (p PKI) loadCA(name string) (keyPair, error) {
	certPEM, err := os.ReadFile(p.Path(name + ".crt"))
	if err != nil {
		return keyPair{}, fmt.Errorf("read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(p.Path(name + ".key"))
	if err != nil {
		return keyPair{}, fmt.Errorf("read CA key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return keyPair{}, fmt.Errorf("decode CA %s: no PEM block", name)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return keyPair{}, fmt.Errorf("parse CA %s: %w", name, err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return keyPair{}, fmt.Errorf("parse CA key %s: %w", name, err)
	}
	return keyPair{cert: cert, key: key}, nil
}

func (p PKI) writeLeaf(ca keyPair, s certSpec) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate %s key: %w", s.name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: s.cn, Organization: s.orgs},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{s.usage},
		BasicConstraintsValid: true,
		DNSNames:              s.dnsNames,
		IPAddresses:           s.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("sign %s: %w", s.name, err)
	}
	if err := writePEM(p.Path(s.name+".crt"), "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return p.writeKey(s.name+".key", key)
}

func (p PKI) writeKey(name string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal %s: %w", name, err)
	}
	return writePEM(p.Path(name), "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}
