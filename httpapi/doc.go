// Package httpapi is the REST history API (/history/v1/...) as a chi http.Handler: parameter
// parsing, the objects (cluster, nodes, namespaces, pods by name or UID, containers,
// workloads) resolved through the catalog, their series computed by tsdb.DB.Range and summed,
// JSON and CSV encoding, error-to-status translation and per-namespace authorization through
// SubjectAccessReviews. Package cmd mounts it at Prefix. docs/history-api.md is the user's
// reference; openapi.json, served at /history/v1/openapi.json, the machine-readable one.
package httpapi
