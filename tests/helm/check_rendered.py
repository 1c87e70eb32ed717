#!/usr/bin/python3
"""Asserts on the zmesh chart's rendered manifests (scripts/check-helm renders them).

Usage: check_rendered.py HELM CHART_DIR [BIN_DIR]

Renders the chart with helm for the default values and for ci/five-replicas-values.yaml, checks
what a deployment relies on (replica counts, ports, volumes, probes, the config files the
daemons read), that bad values are refused, and runs the directory's start script against stub
commands. With BIN_DIR (a build's bin/), the rendered config files are also checked by the real
daemons (--only_check_args), and the start script bootstraps three real replicas on loopback
addresses (127.0.0.11-13 standing in for pod IPs) that must elect one leader. Prints one line per check and "N passed, N failed"; exits non-zero
on any failure.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import yaml

HELM, CHART = sys.argv[1], os.path.abspath(sys.argv[2])
BIN_DIR = sys.argv[3] if len(sys.argv) > 3 else ""
RELEASE, NAMESPACE = "zm", "mesh"
FULL = "zm-zmesh"
passed, failed = 0, 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}" + (f": {detail}" if detail else ""))


def render(*extra):
    out = subprocess.run(
        [HELM, "template", RELEASE, CHART, "--namespace", NAMESPACE, *extra],
        capture_output=True, text=True)
    return out


def manifests(*extra):
    out = render(*extra)
    if out.returncode != 0:
        sys.exit(f"helm template {' '.join(extra)} failed:\n{out.stderr}")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def parse_conf(text):
    """The config-file format of common/flags (docs/deploy.md), enough for rendered files."""
    settings = {}
    for raw in text.splitlines():
        line = raw.split(" #")[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        name, _, value = line.partition("=")
        settings[name.strip()] = value.strip()
    return settings


def container(workload, name):
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env_of(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def ports_of(c):
    return {p["name"]: p for p in c["ports"]}


def check_release(label, m, want):
    """Checks common to every values file; `want` holds the expected numbers."""
    sts = m[("StatefulSet", f"{FULL}-directory")]
    ds = m[("DaemonSet", f"{FULL}-proxy")]
    headless = m[("Service", f"{FULL}-directory-peers")]
    client = m[("Service", f"{FULL}-directory")]
    pdb = m[("PodDisruptionBudget", f"{FULL}-directory")]
    cm = m[("ConfigMap", f"{FULL}-config")]
    pod = sts["spec"]["template"]
    d = container(sts, "directory")
    p = container(ds, "proxy")
    pod_labels = pod["metadata"]["labels"]

    def selects(selector):
        return all(pod_labels.get(k) == v for k, v in selector.items())

    # Directory StatefulSet.
    check(f"{label}: directory replicas", sts["spec"]["replicas"] == want["replicas"],
          sts["spec"]["replicas"])
    check(f"{label}: start script gets the replica count",
          env_of(d)["REPLICAS"] == str(want["replicas"]) and
          env_of(d)["INITIAL_CLUSTER_SIZE"] == str(want["replicas"]), env_of(d))
    check(f"{label}: StatefulSet uses the headless service",
          sts["spec"]["serviceName"] == headless["metadata"]["name"])
    check(f"{label}: replicas start in parallel (bootstrap together)",
          sts["spec"]["podManagementPolicy"] == "Parallel")
    check(f"{label}: StatefulSet selector matches its pods",
          selects(sts["spec"]["selector"]["matchLabels"]))
    dports = ports_of(d)
    check(f"{label}: directory container ports",
          (dports["grpc"]["containerPort"], dports["raft"]["containerPort"]) ==
          want["directory_ports"][:2], dports)
    check(f"{label}: directory metrics port",
          dports.get("metrics", {}).get("containerPort") ==
          (want["directory_ports"][2] if want["metrics"] else None), dports)
    env = env_of(d)
    check(f"{label}: start script gets the ports",
          (int(env["GRPC_PORT"]), int(env["RAFT_PORT"])) == want["directory_ports"][:2], env)
    check(f"{label}: readiness probe is gRPC health on the gRPC port",
          d["readinessProbe"].get("grpc", {}).get("port") == want["directory_ports"][0],
          d["readinessProbe"])
    check(f"{label}: liveness probe is gRPC health on the gRPC port",
          d["livenessProbe"].get("grpc", {}).get("port") == want["directory_ports"][0],
          d["livenessProbe"])
    vct = sts["spec"]["volumeClaimTemplates"]
    check(f"{label}: one persistent volume per replica",
          len(vct) == 1 and vct[0]["metadata"]["name"] == "data" and
          vct[0]["spec"]["resources"]["requests"]["storage"] == want["volume_size"] and
          vct[0]["spec"].get("storageClassName") == want["storage_class"], vct)
    mounts = {v["name"]: v["mountPath"] for v in d["volumeMounts"]}
    check(f"{label}: the volume holds the data dir",
          mounts.get("data") == "/var/lib/zmesh" and
          env["DATA_DIR"].startswith("/var/lib/zmesh/"), mounts)
    check(f"{label}: directory runs as non-root with a read-only root fs",
          pod["spec"]["securityContext"]["runAsNonRoot"] is True and
          d["securityContext"]["readOnlyRootFilesystem"] is True and
          d["securityContext"]["allowPrivilegeEscalation"] is False)
    check(f"{label}: directory host network", bool(pod["spec"].get("hostNetwork")) ==
          want["host_network"], pod["spec"].get("hostNetwork"))
    anti = pod["spec"].get("affinity", {}).get("podAntiAffinity", {})
    if want["anti_affinity"] == "hard":
        terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    else:
        terms = [t["podAffinityTerm"]
                 for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    check(f"{label}: {want['anti_affinity']} anti-affinity across nodes",
          len(terms) == 1 and terms[0]["topologyKey"] == "kubernetes.io/hostname" and
          selects(terms[0]["labelSelector"]["matchLabels"]), anti)
    check(f"{label}: image", d["image"] == want["image"] and p["image"] == want["image"],
          d["image"])

    # Services and PDB.
    check(f"{label}: headless service for peers",
          headless["spec"]["clusterIP"] == "None" and
          headless["spec"]["publishNotReadyAddresses"] is True and
          selects(headless["spec"]["selector"]) and
          sorted(x["port"] for x in headless["spec"]["ports"]) ==
          sorted(want["directory_ports"][:2]), headless["spec"])
    check(f"{label}: client service on the gRPC port",
          [x["port"] for x in client["spec"]["ports"]] == [want["directory_ports"][0]] and
          client["spec"].get("clusterIP") != "None" and selects(client["spec"]["selector"]),
          client["spec"])
    check(f"{label}: PDB keeps a majority",
          pdb["spec"]["maxUnavailable"] == 1 and selects(pdb["spec"]["selector"]["matchLabels"]))

    # Proxy DaemonSet.
    ppod = ds["spec"]["template"]["spec"]
    check(f"{label}: proxy on the host network with cluster DNS",
          ppod["hostNetwork"] is True and ppod["dnsPolicy"] == "ClusterFirstWithHostNet")
    pports = ports_of(p)
    got = tuple(pports[n]["containerPort"] for n in ("call", "fanout", "notify", "cast"))
    check(f"{label}: proxy data ports", got == want["proxy_ports"], pports)
    check(f"{label}: proxy hostPorts equal its ports",
          all(x.get("hostPort") == x["containerPort"] for x in pports.values()), pports)
    vols = {v["name"]: v for v in ppod["volumes"]}
    pmounts = {v["name"]: v["mountPath"] for v in p["volumeMounts"]}
    check(f"{label}: IPC dir is a hostPath mounted at /run/zmesh",
          vols["ipc"]["hostPath"]["path"] == want["ipc_host_path"] and
          pmounts["ipc"] == "/run/zmesh", vols["ipc"])
    check(f"{label}: proxy liveness on the CALL port",
          p["livenessProbe"]["tcpSocket"]["port"] == want["proxy_ports"][0])
    check(f"{label}: proxy readiness = node registered (ready file)",
          "/run/zmesh-proxy/ready" in " ".join(p["readinessProbe"]["exec"]["command"]))
    check(f"{label}: proxy runs as non-root in the IPC dir's group",
          p["securityContext"]["runAsNonRoot"] is True and
          p["securityContext"]["runAsGroup"] == want["ipc_gid"])
    init = ppod.get("initContainers", [])
    check(f"{label}: init container hands the IPC dir to the proxy's user and group",
          len(init) == 1 and f":{want['ipc_gid']} /run/zmesh" in init[0]["command"][-1], init)

    # Config files the daemons read.
    dconf = parse_conf(cm["data"]["zmesh-directory.conf"])
    pconf = parse_conf(cm["data"]["zmesh-proxy.conf"])
    check(f"{label}: directory config listens on the gRPC port",
          dconf.get("listen") == f"0.0.0.0:{want['directory_ports'][0]}", dconf)
    check(f"{label}: directory config metrics-listen",
          dconf.get("metrics-listen") ==
          (f"0.0.0.0:{want['directory_ports'][2]}" if want["metrics"] else None), dconf)
    check(f"{label}: proxy config metrics-listen",
          pconf.get("metrics-listen") ==
          (f"0.0.0.0:{want['proxy_metrics_port']}" if want["metrics"] else None), pconf)
    for k, v in want["directory_settings"].items():
        check(f"{label}: directory config {k} = {v}", dconf.get(k) == v, dconf)
    addresses = pconf.get("directory", "").split(",")
    domain = f"{FULL}-directory-peers.{NAMESPACE}.svc.cluster.local"
    check(f"{label}: proxy config names every directory replica",
          addresses == [f"{FULL}-directory-{i}.{domain}:{want['directory_ports'][0]}"
                        for i in range(want["replicas"])], addresses)
    check(f"{label}: proxy config ports",
          tuple(int(pconf[f"{n}-port"]) for n in ("call", "fanout", "notify", "cast")) ==
          want["proxy_ports"], pconf)
    check(f"{label}: proxy config lease TTL", pconf.get("lease-ttl-ms") == want["lease_ttl_ms"],
          pconf)
    check(f"{label}: proxy config IPC dir", pconf.get("ipc-dir") == "/run/zmesh", pconf)
    for key in ("directory-start.sh", "proxy-start.sh"):
        with open(os.path.join(CHART, "files", key)) as f:
            check(f"{label}: ConfigMap carries files/{key}",
                  cm["data"][key].strip() == f.read().strip())
    if BIN_DIR:
        for daemon, key in (("zmesh-directory", "zmesh-directory.conf"),
                            ("zmesh-proxy", "zmesh-proxy.conf")):
            with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
                f.write(cm["data"][key])
                f.flush()
                out = subprocess.run([os.path.join(BIN_DIR, daemon), "--config", f.name,
                                      "--only_check_args"], capture_output=True, text=True)
            check(f"{label}: {daemon} accepts the rendered {key}", out.returncode == 0,
                  out.stderr.strip())
    return cm


def render_notes(*extra):
    """NOTES.txt is not rendered by `helm template`: render it through tpl in a copy."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "zmesh")
        shutil.copytree(CHART, copy)
        shutil.copy(os.path.join(CHART, "templates", "NOTES.txt"), os.path.join(copy, "notes.txt"))
        with open(os.path.join(copy, "templates", "zz-notes.yaml"), "w") as f:
            f.write('kind: Notes\nmetadata: {name: notes}\n'
                    'text: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')
        out = subprocess.run([HELM, "template", RELEASE, copy, "--namespace", NAMESPACE,
                              "--show-only", "templates/zz-notes.yaml", *extra],
                             capture_output=True, text=True)
        if out.returncode != 0:
            return "RENDER FAILED: " + out.stderr
        return yaml.safe_load(out.stdout)["text"]


def check_start_script(cm):
    """Runs files/directory-start.sh with stub zmesh-directory, zmeshctl and getent."""
    script = cm["data"]["directory-start.sh"]
    with tempfile.TemporaryDirectory() as tmp:
        stubs = os.path.join(tmp, "bin")
        os.mkdir(stubs)
        stub_text = {
            # Records its arguments, one per line.
            "zmesh-directory": 'printf "%s\\n" "$@" > "$STUB_OUT"\n',
            # A cluster answers when STUB_CLUSTER=1.
            "zmeshctl": '[ "${STUB_CLUSTER:-0}" = 1 ]\n',
            # zm-zmesh-directory-N.* resolves to 10.9.0.(N+1) unless STUB_UNRESOLVED names N.
            "getent": ('n=${2#zm-zmesh-directory-}; n=${n%%.*}\n'
                       '[ "$n" = "${STUB_UNRESOLVED:-x}" ] && exit 2\n'
                       'echo "10.9.0.$((n + 1))  STREAM $2"\n'),
        }
        for name, body in stub_text.items():
            path = os.path.join(stubs, name)
            with open(path, "w") as f:
                f.write("#!/bin/sh\n" + body)
            os.chmod(path, 0o755)
        script_path = os.path.join(tmp, "directory-start.sh")
        with open(script_path, "w") as f:
            f.write(script)

        def run(ordinal, data_dir, **env):
            out_path = os.path.join(tmp, "args")
            if os.path.exists(out_path):
                os.remove(out_path)
            full_env = {
                "PATH": stubs + ":/usr/bin:/bin", "POD_NAME": f"zm-zmesh-directory-{ordinal}",
                "POD_NAMESPACE": NAMESPACE, "POD_IP": f"10.9.0.{ordinal + 1}",
                "STATEFULSET": "zm-zmesh-directory", "PEERS_SERVICE": "zm-zmesh-directory-peers",
                "CLUSTER_DOMAIN": "cluster.local", "REPLICAS": "3", "INITIAL_CLUSTER_SIZE": "3",
                "GRPC_PORT": "9500", "RAFT_PORT": "9510", "PEER_WAIT_SECONDS": "0",
                "DATA_DIR": data_dir, "CONFIG": "/etc/zmesh/zmesh-directory.conf",
                "STUB_OUT": out_path}
            full_env.update(env)
            proc = subprocess.run(["/bin/sh", script_path], env=full_env, capture_output=True,
                                  text=True, timeout=30)
            args = open(out_path).read().split("\n")[:-1] if os.path.exists(out_path) else None
            return proc, args

        def flag(args, name):
            return args[args.index(name) + 1] if args and name in args else None

        data = os.path.join(tmp, "d1")
        proc, args = run(1, data)
        check("start script: fresh replica 2 of 3 bootstraps the cluster from the peers' IPs",
              args is not None and flag(args, "--id") == "2" and
              flag(args, "--raft-listen") == "10.9.0.2:9510" and
              flag(args, "--initial-cluster") ==
              "1=10.9.0.1:9510,2=10.9.0.2:9510,3=10.9.0.3:9510" and "--join" not in args and
              flag(args, "--config") == "/etc/zmesh/zmesh-directory.conf" and
              flag(args, "--data-dir") == data and
              flag(args, "--advertise") ==
              f"zm-zmesh-directory-1.zm-zmesh-directory-peers.{NAMESPACE}.svc.cluster.local:9500",
              f"{args} {proc.stderr}")
        os.makedirs(os.path.join(data, "raft"))
        proc, args = run(1, data)
        check("start script: a restart on its data dir neither bootstraps nor joins",
              args is not None and "--initial-cluster" not in args and "--join" not in args and
              flag(args, "--id") == "2", f"{args} {proc.stderr}")
        proc, args = run(1, data, POD_IP="10.9.7.7")
        check("start script: a restart with a new IP is refused with the way out",
              proc.returncode != 0 and args is None and "members remove 2" in proc.stderr,
              proc.stderr)
        proc, args = run(4, os.path.join(tmp, "d4"), REPLICAS="5")
        check("start script: a replica beyond the initial cluster joins",
              args is not None and "--join" in args and flag(args, "--id") == "5" and
              "--initial-cluster" not in args, f"{args} {proc.stderr}")
        proc, args = run(0, os.path.join(tmp, "d0"), STUB_CLUSTER="1")
        check("start script: an empty replica joins when a cluster answers",
              args is not None and "--join" in args and "--initial-cluster" not in args,
              f"{args} {proc.stderr}")
        proc, args = run(0, os.path.join(tmp, "d0b"), STUB_UNRESOLVED="2")
        check("start script: a peer that never resolves stops the bootstrap",
              proc.returncode != 0 and args is None and "does not resolve" in proc.stderr,
              proc.stderr)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_start_script_with_daemons(cm):
    """Three real zmesh-directory replicas started by files/directory-start.sh on loopback
    (127.0.0.11-13 standing in for pod IPs; a stub getent resolves the peers' names to them)
    form one cluster, and a restarted replica comes back from its data dir."""
    import signal
    import time
    script = cm["data"]["directory-start.sh"]
    grpc_port, raft_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        stubs = os.path.join(tmp, "bin")
        os.mkdir(stubs)
        with open(os.path.join(stubs, "getent"), "w") as f:
            f.write('#!/bin/sh\nn=${2#zm-zmesh-directory-}; n=${n%%.*}\n'
                    'echo "127.0.0.$((n + 11))  STREAM $2"\n')
        os.chmod(os.path.join(stubs, "getent"), 0o755)
        for program in ("zmesh-directory", "zmeshctl"):
            os.symlink(os.path.join(BIN_DIR, program), os.path.join(stubs, program))
        script_path = os.path.join(tmp, "directory-start.sh")
        with open(script_path, "w") as f:
            f.write(script)
        procs = {}

        def start(i):
            conf = os.path.join(tmp, f"c{i}.conf")
            with open(conf, "w") as f:
                f.write(f"listen = 127.0.0.{i + 11}:{grpc_port}\n")
            env = {"PATH": stubs + ":/usr/bin:/bin", "POD_NAME": f"zm-zmesh-directory-{i}",
                   "POD_NAMESPACE": NAMESPACE, "POD_IP": f"127.0.0.{i + 11}",
                   "STATEFULSET": "zm-zmesh-directory",
                   "PEERS_SERVICE": "zm-zmesh-directory-peers", "CLUSTER_DOMAIN": "cluster.local",
                   "REPLICAS": "3", "INITIAL_CLUSTER_SIZE": "3", "GRPC_PORT": str(grpc_port),
                   "RAFT_PORT": str(raft_port), "PEER_WAIT_SECONDS": "10",
                   "DATA_DIR": os.path.join(tmp, f"d{i}"), "CONFIG": conf}
            log = open(os.path.join(tmp, f"log{i}"), "a")
            procs[i] = subprocess.Popen(["/bin/sh", script_path], env=env, stdout=log,
                                        stderr=log, start_new_session=True)

        def members():
            out = subprocess.run(
                [os.path.join(BIN_DIR, "zmeshctl"), "--directory",
                 ",".join(f"127.0.0.{i + 11}:{grpc_port}" for i in range(3)), "--timeout-ms",
                 "2000", "-o", "json", "members", "list"], capture_output=True, text=True)
            return out.stdout if out.returncode == 0 else ""

        def eventually(condition, seconds=20):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if condition():
                    return True
                time.sleep(0.2)
            return condition()

        def one_leader(text):
            return text.count('"ROLE_LEADER"') == 1 and all(
                f"127.0.0.{i + 11}:{raft_port}" in text for i in range(3))

        try:
            for i in range(3):
                start(i)
            ok = eventually(lambda: one_leader(members()))
            logs = "".join(open(os.path.join(tmp, f"log{i}")).read()[-600:] for i in range(3))
            check("start script + zmesh-directory: three replicas bootstrap one cluster", ok,
                  members() + logs)
            procs[1].send_signal(signal.SIGTERM)
            procs[1].wait(timeout=15)
            start(1)
            ok = eventually(lambda: "restarting from its data dir" in
                            open(os.path.join(tmp, "log1")).read() and one_leader(members()))
            check("start script + zmesh-directory: a restarted replica rejoins from its data",
                  ok, open(os.path.join(tmp, "log1")).read()[-800:])
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


defaults = manifests()
check("default: six resources",
      sorted(k for k, _ in defaults) ==
      ["ConfigMap", "DaemonSet", "PodDisruptionBudget", "Service", "Service", "StatefulSet"],
      sorted(defaults))
cm = check_release("default", defaults, {
    "replicas": 3, "directory_ports": (9500, 9510, 9520), "volume_size": "2Gi",
    "storage_class": None, "host_network": True, "anti_affinity": "hard",
    "image": "registry.example.com/zmesh/zmesh:0.1.0",
    "proxy_ports": (9501, 9502, 9503, 9504), "ipc_host_path": "/run/zmesh", "ipc_gid": 10001,
    "lease_ttl_ms": "6000", "metrics": True, "proxy_metrics_port": 9521,
    "directory_settings": {"log-level": "info", "log-format": "json"}})
five = manifests("-f", os.path.join(CHART, "ci", "five-replicas-values.yaml"))
check_release("five", five, {
    "replicas": 5, "directory_ports": (19500, 19510, 19520), "volume_size": "10Gi",
    "storage_class": "local-ssd", "host_network": False, "anti_affinity": "soft",
    "image": "registry.example.com/zmesh/zmesh-ci:1.2.3",
    "proxy_ports": (19501, 19502, 19503, 19504), "ipc_host_path": "/var/run/zmesh-ci",
    "ipc_gid": 20002, "lease_ttl_ms": "4000", "metrics": True, "proxy_metrics_port": 19521,
    "directory_settings": {"log-level": "debug", "raft-election-timeout-ms": "300"}})
five_sts = five[("StatefulSet", f"{FULL}-directory")]["spec"]["template"]["spec"]
check("five: nodeSelector puts replicas on the controllers",
      five_sts.get("nodeSelector") == {"node-role.kubernetes.io/control-plane": ""})

scaled = manifests("--set", "directory.replicas=5", "--set", "directory.initialClusterSize=3")
env = env_of(container(scaled[("StatefulSet", f"{FULL}-directory")], "directory"))
check("scale-up: 5 replicas, 3 bootstrap", (env["REPLICAS"], env["INITIAL_CLUSTER_SIZE"]) ==
      ("5", "3"), env)
no_proxy = manifests("--set", "proxy.enabled=false")
check("proxy.enabled=false drops the DaemonSet",
      not any(k == "DaemonSet" for k, _ in no_proxy))
check("default: proxy pods are annotated for scraping on the metrics port",
      defaults[("DaemonSet", f"{FULL}-proxy")]["spec"]["template"]["metadata"]["annotations"][
          "prometheus.io/port"] == "9521")
no_metrics = manifests("--set", "metrics.enabled=false")
no_metrics_cm = no_metrics[("ConfigMap", f"{FULL}-config")]["data"]
check("metrics.enabled=false: neither daemon serves /metrics, no scrape annotation",
      "metrics-listen" not in no_metrics_cm["zmesh-directory.conf"] and
      "metrics-listen" not in no_metrics_cm["zmesh-proxy.conf"] and
      "prometheus.io/scrape" not in no_metrics[("DaemonSet", f"{FULL}-proxy")]["spec"][
          "template"]["metadata"]["annotations"] and
      "metrics" not in ports_of(container(no_metrics[("StatefulSet", f"{FULL}-directory")],
                                          "directory")), no_metrics_cm)

for bad, why in ((["--set", "directory.replicas=4"], "must be an odd number"),
                 (["--set", "directory.replicas=0"], "must be an odd number"),
                 (["--set", "directory.initialClusterSize=5"], "cannot be larger"),
                 (["--set", "directory.antiAffinity=sometimes"], "hard, soft or none")):
    out = render(*bad)
    check(f"refused: {' '.join(bad[1::2])}", out.returncode != 0 and why in out.stderr,
          out.stderr.strip())

notes = render_notes()
check("NOTES: how to check the cluster and the nodes",
      "zmeshctl --directory zm-zmesh-directory:9500 status" in notes and
      "nodes list" in notes and "3 replicas" in notes and "9501" in notes and
      "docs/deploy.md" in notes, notes)
notes5 = render_notes("-f", os.path.join(CHART, "ci", "five-replicas-values.yaml"))
check("NOTES (five): replica count and ports follow the values",
      "5 replicas" in notes5 and "zm-zmesh-directory:19500" in notes5 and "19501" in notes5 and
      "4000 ms" in notes5, notes5)

check_start_script(cm)
if BIN_DIR:
    check_start_script_with_daemons(cm)

print(f"helm-chart: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
