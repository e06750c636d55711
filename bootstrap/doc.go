// Package bootstrap is the boot environment of a Racklet node: the program
// (cmd/racklet-init) that runs as init in a u-root initramfs, fetches the
// node's OS image over HTTPS, verifies it, reports its boot stages to the
// control plane and hands over to the image's kernel with kexec.
// Package bootstrap/initramfs builds the initramfs (`make initramfs`).
//
// # What it reads
//
// The configuration comes from /etc/racklet/bootstrap.json in the
// initramfs (optional) and the kernel command line, which wins field by
// field:
//
//	kernel parameter     JSON field     meaning
//	racklet.node=n3      "node"         this node's name
//	racklet.api=URL,...  "api": [...]   the control plane's API URLs (several: failover)
//	racklet.image=URL    "image"        the boot image; its manifest is URL + ".manifest.json"
//	racklet.key=KEYID    "keyId"        optional: only this trusted key may have signed it
//	racklet.digest=D     "imageDigest"  optional: the image must be sha256 D ("sha256:<hex>")
//	racklet.token=T      "token"        optional: the node's bearer token for stage reports (see below)
//
// All URLs must be https; http://, tftp:// and anything else are refused
// (ErrInsecureURL). An unknown racklet.* parameter is an error, not a
// silent typo. "trustDir" (JSON only) moves the trust anchors for runs
// outside an initramfs.
//
// The trust anchors are files in the initramfs, never on the command line:
// /etc/racklet/ca.crt (the CA certificates, PEM, that HTTPS servers must
// chain to: the rack CA; the system roots are never used),
// /etc/racklet/keys/*.pub (the ed25519 public keys trusted to sign OS
// images, as `rackctl firmware keygen` writes them) and /etc/racklet/epoch
// (an RFC 3339 time, the initramfs's build time). A node without a
// real-time clock starts in 1970, when no certificate is valid yet: TLS
// checks certificates at the epoch when the clock is behind it, and as PID
// 1 the program sets the clock forward to it (as systemd does with its
// build time). A server certificate must therefore be valid at the epoch
// (issued before the initramfs was built) until the node has a time source.
//
// # The node's credentials
//
// On a rack with API authentication the stage reports must say which
// node they come from. The node's identity (kind node, role node; see
// controlplane/pki) may report that node's boot stages and nothing else:
// no reads, no other node, no NATS. The boot environment presents either
// or both of:
//
//   - a bearer token (`rackctl pki token node n3 --out token`), sent as
//     "Authorization: Bearer". It is taken from, in order: racklet.token on
//     the kernel command line, "token" in the configuration file, and the
//     file /etc/racklet/token (TokenFile in the trust directory). The
//     file is the place for it: /proc/cmdline is readable by every
//     process, and a command line often travels in plain text (boot
//     loader configuration, PXE); the command line and the configuration
//     file are for overriding it.
//   - a client certificate, /etc/racklet/node.crt with its key
//     /etc/racklet/node.key (NodeCertFile, NodeKeyFile; `rackctl pki issue
//     node n3` writes n3.crt and n3.key), presented to an API that asks
//     for one. Its common name must be the node's name.
//
// Neither is required (a control plane without authentication needs
// none). A token that is not of the form rackctl prints, half a key pair
// or a certificate for another node is a configuration error. The token is
// never logged nor put in an error or a failure reason; the log says only
// where it came from. Credentials make an initramfs one node's: build it
// per node (racklet-initramfs -token, -node-cert, -node-key) and deliver
// it so that only that node gets it. If one leaks, the holder can report
// boot stages for that one node; revoke it with rackctl pki revoke.
//
// # What it does
//
// As PID 1 it mounts /dev (devtmpfs), /proc, /sys and /tmp and brings up
// the loopback interface, as u-root's libinit does (libinit itself needs
// modules the project does not carry). The network is the kernel's:
// the command line must say ip=dhcp (CONFIG_IP_PNP_DHCP), and
// /etc/resolv.conf points at /proc/net/pnp, where that writes the name
// servers. Then Run:
//
//  1. report stage bootstrap;
//  2. fetch the manifest (at most 64 KiB) and check it with
//     firmware.Verify: well formed, signed by a trusted key, for component
//     os, and naming racklet.digest if given; all before the image is
//     downloaded;
//  3. fetch the image, at most the manifest's size (firmware.ComponentOS
//     bounds that at 1 GiB), and verify its size and SHA-256;
//  4. decode the payload (DecodeImage) and report image-verified with the
//     image's digest;
//  5. hand over: Booter.Boot, which is Kexec (u-root's kexec.FileLoad,
//     then kexec.Reboot) on a node.
//
// Downloads are retried (3 attempts, backoff from 1 s) on connection
// errors and 5xx, never on 4xx; each attempt has a time limit. On any
// failure the stage it happened in is reported with failed=true and the
// error as the reason (bootstrap for everything up to verification,
// image-verified when kexec fails), and nothing is booted. As PID 1 it then
// stays up (init must not exit) and waits for the control plane to
// power-cycle the node.
//
// # Stage reports
//
// HTTPReporter posts {"stage", "failed", "reason", "imageDigest"} as JSON
// to <api>/v1/nodes/<node>/boot/stages with the node's credentials,
// trying the API URLs in order (failover on a connection error or 5xx, a
// 4xx is final, a refused credential too), 3 rounds from
// 1 s, each request at most 5 s, each report at most 30 s in all. A report
// that cannot be delivered is logged and the boot goes on: the control
// plane also follows the boot through the node's BMC. Recorder keeps
// reports in memory, for tests.
//
// # The boot image
//
// An OS image is a tar archive (ustar, pax or GNU) of up to three regular
// files: kernel (required; what kexec_file_load takes on the architecture:
// a bzImage on amd64, an uncompressed Image on arm64), initrd (optional)
// and cmdline (optional, one line: the new kernel's command line), each
// optionally named ./kernel etc. Made and signed with standard tools:
//
//	tar -cf os.img kernel initrd cmdline
//	rackctl firmware sign --key firmware-signing.key --component os \
//	    --version 1.2.3 --security-version 1 os.img   # writes os.img.manifest.json
//
// The whole archive is what the manifest signs, so nothing in it is
// trusted before the signature and digest verify. While booting it is held
// in memory, then the kernel and initrd are extracted and written to /tmp
// (a tmpfs) for kexec: a node needs RAM for about three times the image.
package bootstrap
