package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// ChartRelease and ChartNamespace are the release name and namespace InstallChart renders
// deploy/helm/hindsight with, as users install it; the chart's Service, ServiceAccount and
// certificate are named after the release.
const (
	ChartRelease   = "hindsight"
	ChartNamespace = "kube-system"
)

// ChartInstall is what InstallChart applied of the chart, and what Hindsight needs to run
// as the chart's ServiceAccount out of the cluster.
type ChartInstall struct {
	// Kubeconfig holds the ServiceAccount's token, its only credential.
	Kubeconfig string
	// ServingCert and ServingKey are the certificate the chart made (its Secret).
	ServingCert, ServingKey string
	// RBAC are the ServiceAccount and RBAC objects applied.
	RBAC []*unstructured.Unstructured
	// APIServices are the chart's APIServices, applied by RegisterChart.
	APIServices []*unstructured.Unstructured
}

// InstallChart renders deploy/helm/hindsight with the given value files (none: the
// defaults) and applies its ServiceAccount and RBAC as they are; the chart's Service becomes
// the harness's ExternalName route to 127.0.0.1 of the same name (the StatefulSet does not
// run: Hindsight runs out of the cluster). It writes the chart-made serving certificate and
// a kubeconfig with the ServiceAccount's token into dir.
func (c *Cluster) InstallChart(ctx context.Context, dir string, values ...string) (*ChartInstall, error) {
	var args []string
	for _, v := range values {
		args = append(args, "--values", v)
	}
	manifest, err := RenderChart(ctx, c.Tools, args...)
	if err != nil {
		return nil, err
	}
	objs, err := DecodeManifest([]byte(manifest))
	if err != nil {
		return nil, err
	}
	ci := &ChartInstall{}
	var secret *unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			ci.RBAC = append(ci.RBAC, o)
		case "APIService":
			ci.APIServices = append(ci.APIServices, o)
		case "Secret":
			secret = o
		}
	}
	if secret == nil || len(ci.RBAC) == 0 {
		return nil, fmt.Errorf("the chart rendered no serving-certificate Secret or no RBAC")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := c.applyObjects(ctx, filepath.Join(dir, "rbac.yaml"), ci.RBAC); err != nil {
		return nil, err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: ChartRelease, Namespace: ChartNamespace},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost"},
	}
	if _, err := c.client.CoreV1().Services(ChartNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create service %s: %w", ChartRelease, err)
	}
	files := map[string]*string{"tls.crt": &ci.ServingCert, "tls.key": &ci.ServingKey}
	for key, path := range files {
		b64, _, _ := unstructured.NestedString(secret.Object, "data", key)
		data, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(data) == 0 {
			return nil, fmt.Errorf("the chart's Secret has no %s (%v)", key, err)
		}
		*path = filepath.Join(dir, key)
		if err := os.WriteFile(*path, data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", key, err)
		}
	}
	token, err := c.ServiceAccountToken(ctx, ChartNamespace, ChartRelease)
	if err != nil {
		return nil, err
	}
	ci.Kubeconfig = filepath.Join(dir, "serviceaccount.conf")
	if err := c.WriteTokenKubeconfig(ci.Kubeconfig, "system:serviceaccount:"+ChartNamespace+":"+ChartRelease, token); err != nil {
		return nil, err
	}
	return ci, nil
}

// RegisterChart applies the chart's APIServices, changed only to name port (Hindsight's
// local port) instead of the Service's, and waits until each is Available.
func (c *Cluster) RegisterChart(ctx context.Context, ci *ChartInstall, dir string, port int) error {
	for _, o := range ci.APIServices {
		if err := unstructured.SetNestedField(o.Object, int64(port), "spec", "service", "port"); err != nil {
			return fmt.Errorf("APIService %s: %w", o.GetName(), err)
		}
	}
	if err := c.applyObjects(ctx, filepath.Join(dir, "apiservices.yaml"), ci.APIServices); err != nil {
		return err
	}
	for _, o := range ci.APIServices {
		if err := c.WaitAPIServiceAvailable(ctx, o.GetName(), time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// RenderChart renders deploy/helm/hindsight with helm template as release ChartRelease in
// ChartNamespace; args are more helm arguments (--values, --set).
func RenderChart(ctx context.Context, tools Tools, args ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	args = append([]string{"template", ChartRelease, filepath.Join(root, "deploy", "helm", "hindsight"), "--namespace", ChartNamespace}, args...)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tools.Helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// DecodeManifest splits a multi-document YAML manifest into objects.
func DecodeManifest(manifest []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("decode manifest: %w", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// applyObjects writes objs to file and applies them with kubectl apply --server-side, as
// helm's field manager.
func (c *Cluster) applyObjects(ctx context.Context, file string, objs []*unstructured.Unstructured) error {
	var buf bytes.Buffer
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if out, err := c.Kubectl(ctx, "apply", "--server-side", "--field-manager=helm", "-f", file); err != nil {
		return fmt.Errorf("apply %s: %w: %s", filepath.Base(file), err, out)
	}
	return nil
}
