package cluster

import (
	"net"
	"testing"
)

func TestParseProcAddr(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantIP   net.IP
		wantPort int
		wantErr  bool
	}{
		{name: "ipv4 loopback", in: "0100007F:1F90", wantIP: net.ParseIP("127.0.0.1"), wantPort: 8080},
		{name: "ipv4 any", in: "00000000:0050", wantIP: net.ParseIP("0.0.0.0"), wantPort: 80},
		{name: "ipv6 loopback", in: "00000000000000000000000001000000:2379", wantIP: net.ParseIP("::1"), wantPort: 0x2379},
		{name: "no colon", in: "0100007F", wantErr: true},
		{name: "bad hex", in: "zz00007F:0050", wantErr: true},
		{name: "bad length", in: "01007F:0050", wantErr: true},
		{name: "bad port", in: "0100007F:XYZ", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip, port, err := parseProcAddr(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if !ip.Equal(tt.wantIP) || port != tt.wantPort {
				t.Errorf("got %s:%d, want %s:%d", ip, port, tt.wantIP, tt.wantPort)
			}
		})
	}
}
