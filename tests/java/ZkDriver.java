/*
 * ZkDriver: runs a script of ZooKeeper client operations with Apache ZooKeeper's own Java client (3.8)
 * against one or more servers and prints what the client saw, for differential testing of zkfast.
 *
 * Usage:  java -cp <classes>:zookeeper.jar:zookeeper-jute.jar:slf4j-api.jar:slf4j-nop.jar \
 *              ZkDriver [--op-timeout-ms N] [--sequential] host:port [host:port ...]  < script.jsonl
 *         The script is read from stdin (or from --script FILE). It is run once per address inside this
 *         one JVM, all runs side by side in their own threads (--sequential: one after the other). Output
 *         goes to stdout, run by run; nothing else is written there.
 *
 * SCRIPT FORMAT: one flat JSON object per line (blank lines and lines starting with '#' are skipped).
 *   Every line has "op" and, except for global ops, "s" = the session name ("c0", "c1", ...).
 *   The driver waits for each op's callback before starting the next line.
 *   Common fields:  "path": string,  "version": int (default -1),  "watch": bool (default false),
 *     "data": string (UTF-8) | null (a null buffer);  "data_b64": base64 (instead of "data"); default "".
 *     "acl": "open" | "read" | "creator" | "empty" | [[perms, "scheme", "id"], ...]   (default "open")
 *   Session ops:
 *     {"op":"open","s":"c0","timeout":30000}     connect a new session (through a cuttable TCP proxy)
 *     {"op":"close","s":"c0"}                    ZooKeeper.close(): closeSession, then the Closed event.
 *                                                Around it, barriers on every connected session marked
 *                                                "close":"begin"/"end" (+ wire "mark" lines): the events a
 *                                                close fires come in HashSet order in Apache ZooKeeper
 *     {"op":"cut","s":"c0"}                      barrier, then cut the TCP connection (Disconnected event);
 *                                                the client's reconnect attempts are held by the proxy
 *     {"op":"heal","s":"c0"}                     let the held reconnect through: ConnectRequest with the
 *                                                last zxid, auth packets, setWatches/setWatches2; waits
 *                                                for SyncConnected, then a barrier
 *     {"op":"barrier","s":"c0"}                  exists("/") round trip (all earlier events delivered)
 *     {"op":"addAuth","s":"c0","scheme":"digest","auth":"user:pw"}   addAuthInfo + barrier; an unknown
 *                                                scheme gets AUTHFAILED, the session is then dead
 *   Client API ops (all asynchronous with callbacks):
 *     create {path,data,acl,mode,stat:bool,ttl:long}  mode = CreateMode name (PERSISTENT, EPHEMERAL,
 *            PERSISTENT_SEQUENTIAL, EPHEMERAL_SEQUENTIAL, CONTAINER, PERSISTENT_WITH_TTL,
 *            PERSISTENT_SEQUENTIAL_WITH_TTL). stat=false → StringCallback (op create=1 / createContainer),
 *            stat=true or a ttl → Create2Callback (create2=15 / createContainer=19 / createTTL=21)
 *     delete {path,version}   exists {path,watch}   getData {path,watch}   setData {path,data,version}
 *     getACL {path}   setACL {path,acl,version}   getChildren {path,watch,stat:bool} (stat → getChildren2)
 *     sync {path}   getAllChildrenNumber {path}   getEphemerals {prefix (optional)}   whoAmI {}
 *     addWatch {path, mode: "PERSISTENT"|"PERSISTENT_RECURSIVE"}
 *     removeWatches {path, type: "Children"|"Data"|"Any", local:bool, all:bool}
 *            all=false → removeWatches(default watcher) = checkWatches(17); all=true → removeAllWatches(18)
 *     multi {ops:[sub-op, ...]}  sub-ops: {"op":"create",path,data,acl,mode,ttl?}, {"op":"delete",path,
 *            version}, {"op":"setData",path,data,version}, {"op":"check",path,version}, {"op":"getData",
 *            path}, {"op":"getChildren",path}. Only reads → multiRead(22); otherwise multi(14).
 *   Raw ops (same client, hand-built request, to reach server checks the Java API refuses locally):
 *     rawCreate {type: 1|15|19|21, path, data, acl, flags:int, ttl:long (sends CreateTTLRequest)}
 *     rawMulti {type: 14|22, ops:[sub-op, ...]}   (may be empty or mix reads and writes)
 *   Grouping:
 *     {"op":"pipeline","s":"c0","ops":[{...}, ...]}   send all ops of one session back to back, then
 *                                                      wait for all their callbacks
 *
 * OUTPUT: one JSON object per line, every line has "t" = index of the address in the command line.
 *   {"t":0,"run":"start","address":"h:p","start_ms":...}   then, session by session (order of first
 *   open), first the client-API stream then the wire stream of that session, then
 *   {"t":0,"run":"end","end_ms":...}.  A failure of the driver itself prints {"t":0,"fatal":"..."}.
 *   Client-API stream, in the order the client's event thread delivered it:
 *     results  {"s","i"(line no.),["j" (index in a pipeline)],"op","rc",...op fields...}
 *              fields: "path" (callback path), "name" (created path), "stat":{11 Stat fields},
 *              "data"|"data_b64", "children":[...], "acl":[[perms,scheme,id],...], "results":[...multi
 *              results: {"type":opcode, path/stat/data/children/err}], "number", "ephemerals",
 *              "clientInfo":[[scheme,user],...], "timeout" and "session" (open)
 *     client-side exceptions  {"s","i","op","exc":"SimpleClassName","msg":"..."} (emitted after a barrier)
 *     watch / state events    {"s","event":"NodeDataChanged","state":"SyncConnected","path":"/a"}
 *   Wire stream (recorded by the proxy, exact TCP order, pings left out):
 *     {"s","w":">connect",proto,lastZxid,timeout,session,passwdLen,ro}   ConnectRequest
 *     {"s","w":"<connect",proto,timeout,session,passwd:"derived"|hex,ro:true|false|"absent"}
 *     {"s","w":">",xid,type[,scheme][,rel,data,exist,child,persistent,recursive]}   request headers
 *     {"s","w":"<",xid,zxid,err,len[,ev:[type,state,path]]}   reply headers (len = body bytes)
 *     {"s","w":"cut"} / {"s","w":"connect"} (the proxy opened an upstream connection) /
 *     {"s","w":"mark","close":"begin"|"end"} (around a session close, see "close")
 */

import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.apache.jute.InputArchive;
import org.apache.jute.OutputArchive;
import org.apache.jute.Record;
import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.AsyncCallback;
import org.apache.zookeeper.ClientCnxn;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.MultiResponse;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;
import org.apache.zookeeper.proto.CreateRequest;
import org.apache.zookeeper.proto.CreateResponse;
import org.apache.zookeeper.proto.Create2Response;
import org.apache.zookeeper.proto.CreateTTLRequest;
import org.apache.zookeeper.proto.MultiHeader;
import org.apache.zookeeper.proto.ReplyHeader;
import org.apache.zookeeper.proto.RequestHeader;
import org.apache.zookeeper.proto.WhoAmIResponse;

public final class ZkDriver {

    static long opTimeoutMs = 10000;

    public static void main(String[] args) throws Exception {
        List<String> addrs = new ArrayList<>();
        boolean sequential = false;
        InputStream in = System.in;
        for (int k = 0; k < args.length; k++) {
            if (args[k].equals("--op-timeout-ms")) {
                opTimeoutMs = Long.parseLong(args[++k]);
            } else if (args[k].equals("--sequential")) {
                sequential = true;
            } else if (args[k].equals("--script")) {
                in = new FileInputStream(args[++k]);
            } else {
                addrs.add(args[k]);
            }
        }
        // stdout is ours alone: whatever else writes to System.out goes to stderr
        PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false, "UTF-8");
        System.setOut(System.err);
        List<Map<String, Object>> script = new ArrayList<>();
        BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
        String line;
        while ((line = r.readLine()) != null) {
            String t = line.trim();
            if (t.isEmpty() || t.startsWith("#")) {
                continue;
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) Json.parse(t);
            script.add(m);
        }
        // the runs are independent (different servers, different sessions): run them side by side
        List<List<Map<String, Object>>> results = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < addrs.size(); t++) {
            results.add(null);
            final int tt = t;
            Thread th = new Thread(() -> {
                List<Map<String, Object>> res = new Runner(tt, addrs.get(tt)).run(script);
                synchronized (results) {
                    results.set(tt, res);
                }
            }, "runner-" + t);
            threads.add(th);
            th.start();
            if (sequential) {
                th.join();
            }
        }
        for (Thread th : threads) {
            th.join();
        }
        for (List<Map<String, Object>> res : results) {
            for (Map<String, Object> m : res) {
                out.println(Json.write(m));
            }
        }
        out.flush();
        System.exit(0);
    }

    // ------------------------------------------------------------------ one run against one server

    static final class Fatal extends Exception {
        private static final long serialVersionUID = 1L;

        Fatal(String msg) {
            super(msg);
        }
    }

    static final class DZk extends ZooKeeper {
        DZk(String connect, int timeout, Watcher w) throws IOException {
            super(connect, timeout, w);
        }

        ClientCnxn cnx() {
            return cnxn;
        }
    }

    static final class Sess implements Watcher {
        final String name;
        final List<Map<String, Object>> api = new ArrayList<>();
        final List<Map<String, Object>> wire = new ArrayList<>();
        final LinkedBlockingQueue<Event.KeeperState> states = new LinkedBlockingQueue<>();
        volatile boolean recording = true;
        DZk zk;
        Proxy proxy;
        boolean open;      // opened and not closed
        boolean dead;      // AUTHFAILED or similar: the client object is unusable
        boolean cut;

        Sess(String name) {
            this.name = name;
        }

        Map<String, Object> line() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("s", name);
            return m;
        }

        void emit(Map<String, Object> m) {
            synchronized (api) {
                if (recording) {
                    api.add(m);
                }
            }
        }

        void wire(Map<String, Object> m) {
            synchronized (wire) {
                if (recording) {
                    wire.add(m);
                }
            }
        }

        @Override
        public void process(WatchedEvent e) {
            Map<String, Object> m = line();
            m.put("event", e.getType().name());
            m.put("state", e.getState().name());
            m.put("path", e.getPath());
            emit(m);
            if (e.getType() == Event.EventType.None) {
                states.offer(e.getState());
            }
        }

        void waitState(Event.KeeperState want, long ms) throws Fatal, InterruptedException {
            long deadline = System.currentTimeMillis() + ms;
            while (true) {
                long left = deadline - System.currentTimeMillis();
                Event.KeeperState st = left > 0 ? states.poll(left, TimeUnit.MILLISECONDS) : null;
                if (st == null) {
                    throw new Fatal("session " + name + ": no " + want + " event within " + ms + " ms");
                }
                if (st == want) {
                    return;
                }
            }
        }
    }

    /** One pending asynchronous call: the callback fills the line and counts down. */
    static class Pending {
        final CountDownLatch done = new CountDownLatch(1);
        final Sess sess;
        final Map<String, Object> line;
        int rc;

        Pending(Sess sess, Map<String, Object> line) {
            this.sess = sess;
            this.line = line;
        }

        void finish(int rc) {
            this.rc = rc;
            line.put("rc", rc);
            sess.emit(line);
            done.countDown();
        }
    }

    static final class Runner {
        final int t;
        final String address;
        final String upHost;
        final int upPort;
        final Map<String, Sess> sessions = new LinkedHashMap<>();
        final List<Map<String, Object>> global = new ArrayList<>();
        Thread driverThread;

        Runner(int t, String address) {
            this.t = t;
            this.address = address;
            int c = address.lastIndexOf(':');
            this.upHost = address.substring(0, c);
            this.upPort = Integer.parseInt(address.substring(c + 1));
        }

        List<Map<String, Object>> run(List<Map<String, Object>> script) {
            driverThread = Thread.currentThread();
            long start = System.currentTimeMillis();
            String fatal = null;
            for (int i = 0; i < script.size() && fatal == null; i++) {
                try {
                    exec(i, script.get(i));
                } catch (Fatal f) {
                    fatal = "line " + i + ": " + f.getMessage();
                } catch (Exception e) {
                    fatal = "line " + i + ": " + e;
                }
            }
            // final barrier on every live session so that all trailing watch events are delivered
            for (Sess s : sessions.values()) {
                if (fatal == null && s.open && !s.dead && !s.cut) {
                    try {
                        await(barrier(s, -1, null), fatal == null ? opTimeoutMs : 2000);
                    } catch (Exception e) {
                        fatal = "final barrier " + s.name + ": " + e.getMessage();
                    }
                }
            }
            long end = System.currentTimeMillis();
            for (Sess s : sessions.values()) {
                synchronized (s.api) {
                    s.recording = false;
                }
                synchronized (s.wire) {
                    s.recording = false;
                }
            }
            shutdown();
            List<Map<String, Object>> out = new ArrayList<>();
            Map<String, Object> head = new LinkedHashMap<>();
            head.put("run", "start");
            head.put("address", address);
            head.put("start_ms", start);
            out.add(head);
            for (Sess s : sessions.values()) {
                out.addAll(s.api);
                out.addAll(s.wire);
            }
            if (fatal != null) {
                Map<String, Object> f = new LinkedHashMap<>();
                f.put("fatal", fatal);
                out.add(f);
            }
            Map<String, Object> tail = new LinkedHashMap<>();
            tail.put("run", "end");
            tail.put("end_ms", end);
            out.add(tail);
            List<Map<String, Object>> tagged = new ArrayList<>();
            for (Map<String, Object> m : out) {
                Map<String, Object> n = new LinkedHashMap<>();
                n.put("t", t);
                n.putAll(m);
                tagged.add(n);
            }
            return tagged;
        }

        void shutdown() {
            List<Thread> closers = new ArrayList<>();
            for (Sess s : sessions.values()) {
                if (s.zk != null && s.open && !s.dead) {
                    final DZk zk = s.zk;
                    if (s.cut && s.proxy != null) {
                        s.proxy.heal();
                    }
                    Thread th = new Thread(() -> {
                        try {
                            zk.close();
                        } catch (Exception e) {
                            // ignored: the run is over
                        }
                    });
                    th.setDaemon(true);
                    th.start();
                    closers.add(th);
                }
            }
            long deadline = System.currentTimeMillis() + 3000;
            for (Thread th : closers) {
                try {
                    th.join(Math.max(1, deadline - System.currentTimeMillis()));
                } catch (InterruptedException e) {
                    break;
                }
            }
            for (Sess s : sessions.values()) {
                if (s.proxy != null) {
                    s.proxy.close();
                }
            }
        }

        Sess sess(Map<String, Object> op) throws Fatal {
            String name = Json.str(op, "s", null);
            if (name == null) {
                throw new Fatal("op without session: " + Json.write(op));
            }
            return sessions.computeIfAbsent(name, Sess::new);
        }

        Sess live(Map<String, Object> op) throws Fatal {
            Sess s = sess(op);
            if (!s.open || s.zk == null) {
                throw new Fatal("session " + s.name + " is not open");
            }
            return s;
        }

        void exec(int i, Map<String, Object> op) throws Exception {
            String kind = Json.str(op, "op", "");
            switch (kind) {
            case "open":
                open(i, op);
                return;
            case "close":
                close(i, op);
                return;
            case "cut":
                cut(i, op);
                return;
            case "heal":
                heal(i, op);
                return;
            case "sleep":
                Thread.sleep(Json.lng(op, "ms", 0));
                return;
            default:
                break;
            }
            Sess s = live(op);
            if (s.dead) {
                // the client object is gone (AUTHFAILED): nothing can be sent any more
                Map<String, Object> m = base(s, i, -1, kind, op);
                m.put("skipped", "dead session");
                s.emit(m);
                return;
            }
            if (kind.equals("pipeline")) {
                List<Pending> ps = new ArrayList<>();
                List<Object> subs = Json.list(op, "ops");
                for (int j = 0; j < subs.size(); j++) {
                    @SuppressWarnings("unchecked")
                    Map<String, Object> sub = (Map<String, Object>) subs.get(j);
                    Pending p = issue(s, i, j, sub);
                    if (p != null) {
                        ps.add(p);
                    }
                }
                for (Pending p : ps) {
                    await(p, opTimeoutMs);
                }
                return;
            }
            Pending p = issue(s, i, -1, op);
            if (p != null) {
                await(p, opTimeoutMs);
            }
            if (kind.equals("addAuth") && !s.zk.getState().isAlive()) {
                s.dead = true;
            }
        }

        void await(Pending p, long ms) throws Fatal, InterruptedException {
            if (!p.done.await(ms, TimeUnit.MILLISECONDS)) {
                throw new Fatal("no callback within " + ms + " ms for " + Json.write(p.line));
            }
        }

        Map<String, Object> base(Sess s, int i, int j, String kind, Map<String, Object> op) {
            Map<String, Object> m = s.line();
            m.put("i", i);
            if (j >= 0) {
                m.put("j", j);
            }
            m.put("op", kind);
            return m;
        }

        // ---------------------------------------------------------- session lifecycle

        void open(int i, Map<String, Object> op) throws Exception {
            Sess s = sess(op);
            if (s.open) {
                throw new Fatal("session " + s.name + " is already open");
            }
            s.dead = false;
            s.cut = false;
            s.states.clear();
            if (s.proxy != null) {
                s.proxy.close();
            }
            s.proxy = new Proxy(s, upHost, upPort);
            int timeout = (int) Json.lng(op, "timeout", 30000);
            s.zk = new DZk(s.proxy.connectString(), timeout, s);
            s.waitState(Watcher.Event.KeeperState.SyncConnected, opTimeoutMs);
            s.open = true;
            Map<String, Object> m = base(s, i, -1, "open", op);
            m.put("rc", 0);
            m.put("timeout", s.zk.getSessionTimeout());
            m.put("session", s.zk.getSessionId());
            s.emit(m);
        }

        /**
         * Barriers on the closing session and on every other connected session, with a line/marker that
         * delimits the events the close fires (their order is a Java HashSet's in Apache ZooKeeper, so the
         * comparison may sort inside these blocks).
         */
        void closeBlock(int i, Sess closing, String phase) throws Exception {
            List<Pending> ps = new ArrayList<>();
            List<Sess> who = new ArrayList<>();
            for (Sess o : sessions.values()) {
                if (o.open && !o.dead && !o.cut && o.zk != null && (o != closing || phase.equals("begin"))) {
                    Map<String, Object> m = o.line();
                    m.put("i", i);
                    m.put("op", "barrier");
                    m.put("close", phase);
                    m.put("of", closing.name);
                    ps.add(barrier(o, i, m));
                    who.add(o);
                }
            }
            for (Pending p : ps) {
                await(p, opTimeoutMs);
            }
            for (Sess o : who) {
                wireMark(o, phase);
            }
        }

        static void wireMark(Sess o, String phase) {
            Map<String, Object> w = o.line();
            w.put("w", "mark");
            w.put("close", phase);
            o.wire(w);
        }

        void close(int i, Map<String, Object> op) throws Exception {
            Sess s = live(op);
            Map<String, Object> m = base(s, i, -1, "close", op);
            if (s.dead) {
                m.put("skipped", "dead session");
                s.emit(m);
                s.open = false;
                return;
            }
            if (s.cut) {
                throw new Fatal("cannot close the cut session " + s.name);
            }
            closeBlock(i, s, "begin");
            final DZk zk = s.zk;
            final Exception[] err = new Exception[1];
            Thread th = new Thread(() -> {
                try {
                    zk.close();
                } catch (Exception e) {
                    err[0] = e;
                }
            });
            th.setDaemon(true);
            th.start();
            th.join(opTimeoutMs);
            if (th.isAlive()) {
                throw new Fatal("close of " + s.name + " did not return");
            }
            s.waitState(Watcher.Event.KeeperState.Closed, opTimeoutMs);
            s.open = false;
            if (err[0] != null) {
                m.put("exc", err[0].getClass().getSimpleName());
            }
            s.emit(m);
            wireMark(s, "end");
            closeBlock(i, s, "end");
        }

        void cut(int i, Map<String, Object> op) throws Exception {
            Sess s = live(op);
            if (s.cut || s.dead) {
                throw new Fatal("cannot cut session " + s.name);
            }
            await(barrier(s, i, null), opTimeoutMs);
            s.states.clear();
            s.proxy.cut();
            s.waitState(Watcher.Event.KeeperState.Disconnected, opTimeoutMs);
            s.cut = true;
            s.emit(base(s, i, -1, "cut", op));
        }

        void heal(int i, Map<String, Object> op) throws Exception {
            Sess s = live(op);
            if (!s.cut) {
                throw new Fatal("session " + s.name + " is not cut");
            }
            s.proxy.heal();
            s.waitState(Watcher.Event.KeeperState.SyncConnected, opTimeoutMs);
            s.cut = false;
            await(barrier(s, i, base(s, i, -1, "heal", op)), opTimeoutMs);
        }

        /** exists("/") round trip; emits `line` (or a barrier line) from the callback. */
        Pending barrier(Sess s, int i, Map<String, Object> line) {
            Map<String, Object> m = line;
            if (m == null) {
                m = s.line();
                if (i >= 0) {
                    m.put("i", i);
                }
                m.put("op", "barrier");
            }
            final Pending p = new Pending(s, m);
            s.zk.exists("/", false, (AsyncCallback.StatCallback) (rc, path, ctx, stat) -> p.finish(rc), null);
            return p;
        }

        // ---------------------------------------------------------- client API operations

        Pending issue(Sess s, int i, int j, Map<String, Object> op) throws Exception {
            String kind = Json.str(op, "op", "");
            Map<String, Object> m = base(s, i, j, kind, op);
            try {
                return issue2(s, kind, op, m);
            } catch (RuntimeException | org.apache.zookeeper.KeeperException e) {
                // rejected by the client library before anything was sent: report it in order, after a
                // round trip, so that it cannot overtake watch events still in flight
                m.put("exc", e.getClass().getSimpleName());
                m.put("msg", String.valueOf(e.getMessage()));
                if (s.cut) {
                    s.emit(m);
                    return null;
                }
                Pending p = new Pending(s, new LinkedHashMap<>()) {
                    @Override
                    void finish(int rc) {
                        m.put("rc_barrier", rc);
                        sess.emit(m);
                        done.countDown();
                    }
                };
                s.zk.exists("/", false, (AsyncCallback.StatCallback) (rc, path, ctx, stat) -> p.finish(rc), null);
                return p;
            }
        }

        Pending issue2(Sess s, String kind, Map<String, Object> op, Map<String, Object> m) throws Exception {
            final DZk zk = s.zk;
            final String path = Json.str(op, "path", "/");
            final int version = (int) Json.lng(op, "version", -1);
            final boolean watch = Json.bool(op, "watch", false);
            final Pending p = new Pending(s, m);
            switch (kind) {
            case "barrier":
                m.put("op", "barrier");
                zk.exists("/", false, (AsyncCallback.StatCallback) (rc, pth, ctx, stat) -> p.finish(rc), null);
                return p;
            case "create": {
                CreateMode mode = CreateMode.valueOf(Json.str(op, "mode", "PERSISTENT"));
                byte[] data = data(op);
                List<ACL> acl = acl(op.get("acl"));
                boolean withStat = Json.bool(op, "stat", false);
                if (op.containsKey("ttl")) {
                    long ttl = Json.lng(op, "ttl", -1);
                    zk.create(path, data, acl, mode, (AsyncCallback.Create2Callback) (rc, pth, ctx, name, stat) -> {
                        m.put("path", pth);
                        m.put("name", name);
                        m.put("stat", stat(stat));
                        p.finish(rc);
                    }, null, ttl);
                } else if (withStat) {
                    zk.create(path, data, acl, mode, (AsyncCallback.Create2Callback) (rc, pth, ctx, name, stat) -> {
                        m.put("path", pth);
                        m.put("name", name);
                        m.put("stat", stat(stat));
                        p.finish(rc);
                    }, null);
                } else {
                    zk.create(path, data, acl, mode, (AsyncCallback.StringCallback) (rc, pth, ctx, name) -> {
                        m.put("path", pth);
                        m.put("name", name);
                        p.finish(rc);
                    }, null);
                }
                return p;
            }
            case "delete":
                zk.delete(path, version, (AsyncCallback.VoidCallback) (rc, pth, ctx) -> {
                    m.put("path", pth);
                    p.finish(rc);
                }, null);
                return p;
            case "exists":
                zk.exists(path, watch, (AsyncCallback.StatCallback) (rc, pth, ctx, stat) -> {
                    m.put("path", pth);
                    m.put("watch", watch);
                    m.put("stat", stat(stat));
                    p.finish(rc);
                }, null);
                return p;
            case "getData":
                zk.getData(path, watch, (AsyncCallback.DataCallback) (rc, pth, ctx, data, stat) -> {
                    m.put("path", pth);
                    m.put("watch", watch);
                    putData(m, data);
                    m.put("stat", stat(stat));
                    p.finish(rc);
                }, null);
                return p;
            case "setData":
                zk.setData(path, data(op), version, (AsyncCallback.StatCallback) (rc, pth, ctx, stat) -> {
                    m.put("path", pth);
                    m.put("stat", stat(stat));
                    p.finish(rc);
                }, null);
                return p;
            case "getACL":
                zk.getACL(path, new Stat(), (AsyncCallback.ACLCallback) (rc, pth, ctx, acl, stat) -> {
                    m.put("path", pth);
                    m.put("acl", aclOut(acl));
                    m.put("stat", stat(stat));
                    p.finish(rc);
                }, null);
                return p;
            case "setACL":
                zk.setACL(path, acl(op.get("acl")), version, (AsyncCallback.StatCallback) (rc, pth, ctx, stat) -> {
                    m.put("path", pth);
                    m.put("stat", stat(stat));
                    p.finish(rc);
                }, null);
                return p;
            case "getChildren":
                if (Json.bool(op, "stat", false)) {
                    zk.getChildren(path, watch, (AsyncCallback.Children2Callback) (rc, pth, ctx, ch, stat) -> {
                        m.put("path", pth);
                        m.put("watch", watch);
                        m.put("stat2", true);
                        m.put("children", ch == null ? null : new ArrayList<Object>(ch));
                        m.put("stat", stat(stat));
                        p.finish(rc);
                    }, null);
                } else {
                    zk.getChildren(path, watch, (AsyncCallback.ChildrenCallback) (rc, pth, ctx, ch) -> {
                        m.put("path", pth);
                        m.put("watch", watch);
                        m.put("children", ch == null ? null : new ArrayList<Object>(ch));
                        p.finish(rc);
                    }, null);
                }
                return p;
            case "sync":
                zk.sync(path, (AsyncCallback.VoidCallback) (rc, pth, ctx) -> {
                    m.put("path", pth);
                    p.finish(rc);
                }, null);
                return p;
            case "getAllChildrenNumber":
                zk.getAllChildrenNumber(path, (AsyncCallback.AllChildrenNumberCallback) (rc, pth, ctx, n) -> {
                    m.put("path", pth);
                    m.put("number", n);
                    p.finish(rc);
                }, null);
                return p;
            case "getEphemerals": {
                AsyncCallback.EphemeralsCallback cb = (rc, ctx, paths) -> {
                    m.put("ephemerals", paths == null ? null : new ArrayList<Object>(paths));
                    p.finish(rc);
                };
                if (op.containsKey("prefix")) {
                    String prefix = Json.str(op, "prefix", "/");
                    m.put("prefix", prefix);
                    zk.getEphemerals(prefix, cb, null);
                } else {
                    zk.getEphemerals(cb, null);
                }
                return p;
            }
            case "whoAmI": {
                RequestHeader h = new RequestHeader();
                h.setType(ZooDefs.OpCode.whoAmI);
                final WhoAmIResponse resp = new WhoAmIResponse();
                zk.cnx().queuePacket(h, new ReplyHeader(), null, resp, (AsyncCallback.VoidCallback) (rc, pth, ctx) -> {
                    if (rc == 0 && resp.getClientInfo() != null) {
                        List<Object> infos = new ArrayList<>();
                        for (ClientInfo ci : resp.getClientInfo()) {
                            infos.add(Arrays.asList(ci.getAuthScheme(), ci.getUser()));
                        }
                        m.put("clientInfo", infos);
                    }
                    p.finish(rc);
                }, null, null, null, null);
                return p;
            }
            case "addWatch": {
                AddWatchMode mode = AddWatchMode.valueOf(Json.str(op, "mode", "PERSISTENT"));
                m.put("mode", mode.name());
                zk.addWatch(path, mode, (AsyncCallback.VoidCallback) (rc, pth, ctx) -> {
                    m.put("path", pth);
                    p.finish(rc);
                }, null);
                return p;
            }
            case "removeWatches": {
                Watcher.WatcherType wt = Watcher.WatcherType.valueOf(Json.str(op, "type", "Any"));
                boolean local = Json.bool(op, "local", false);
                boolean all = Json.bool(op, "all", false);
                m.put("type", wt.name());
                m.put("all", all);
                m.put("local", local);
                AsyncCallback.VoidCallback cb = (rc, pth, ctx) -> {
                    m.put("path", pth);
                    p.finish(rc);
                };
                if (all) {
                    zk.removeAllWatches(path, wt, local, cb, null);
                } else {
                    zk.removeWatches(path, s, wt, local, cb, null);
                }
                return p;
            }
            case "addAuth": {
                String scheme = Json.str(op, "scheme", "digest");
                byte[] auth = Json.str(op, "auth", "").getBytes(StandardCharsets.UTF_8);
                m.put("scheme", scheme);
                m.put("auth", Json.str(op, "auth", ""));
                zk.addAuthInfo(scheme, auth);
                zk.exists("/", false, (AsyncCallback.StatCallback) (rc, pth, ctx, stat) -> p.finish(rc), null);
                return p;
            }
            case "multi": {
                List<Op> ops = new ArrayList<>();
                for (Object o : Json.list(op, "ops")) {
                    @SuppressWarnings("unchecked")
                    Map<String, Object> sub = (Map<String, Object>) o;
                    ops.add(toOp(sub));
                }
                AsyncCallback.MultiCallback cb = (rc, pth, ctx, results) -> {
                    m.put("results", results(results));
                    if (Thread.currentThread() == driverThread || ops.isEmpty()) {
                        // validation failed inside the client, or an empty multi the client answers
                        // itself: nothing went to the server; keep the order with a round trip
                        m.put("local", true);
                        p.rc = rc;
                        m.put("rc", rc);
                        zk.exists("/", false, (AsyncCallback.StatCallback) (rc2, pth2, ctx2, st2) -> {
                            s.emit(m);
                            p.done.countDown();
                        }, null);
                    } else {
                        p.finish(rc);
                    }
                };
                zk.multi(ops, cb, null);
                return p;
            }
            case "rawCreate": {
                int type = (int) Json.lng(op, "type", ZooDefs.OpCode.create);
                RequestHeader h = new RequestHeader();
                h.setType(type);
                Record req;
                if (op.containsKey("ttl")) {
                    req = new CreateTTLRequest(path, data(op), acl(op.get("acl")), (int) Json.lng(op, "flags", 0),
                                               Json.lng(op, "ttl", -1));
                } else {
                    req = new CreateRequest(path, data(op), acl(op.get("acl")), (int) Json.lng(op, "flags", 0));
                }
                m.put("type", type);
                if (type == ZooDefs.OpCode.create) {
                    zk.cnx().queuePacket(h, new ReplyHeader(), req, new CreateResponse(),
                        (AsyncCallback.StringCallback) (rc, pth, ctx, name) -> {
                            m.put("path", pth);
                            m.put("name", name);
                            p.finish(rc);
                        }, path, path, null, null);
                } else {
                    zk.cnx().queuePacket(h, new ReplyHeader(), req, new Create2Response(),
                        (AsyncCallback.Create2Callback) (rc, pth, ctx, name, stat) -> {
                            m.put("path", pth);
                            m.put("name", name);
                            m.put("stat", stat(stat));
                            p.finish(rc);
                        }, path, path, null, null);
                }
                return p;
            }
            case "rawMulti": {
                int type = (int) Json.lng(op, "type", ZooDefs.OpCode.multi);
                List<Op> ops = new ArrayList<>();
                for (Object o : Json.list(op, "ops")) {
                    @SuppressWarnings("unchecked")
                    Map<String, Object> sub = (Map<String, Object>) o;
                    ops.add(toOp(sub));
                }
                RequestHeader h = new RequestHeader();
                h.setType(type);
                m.put("type", type);
                zk.cnx().queuePacket(h, new ReplyHeader(), new RawMulti(ops), new MultiResponse(),
                    (AsyncCallback.MultiCallback) (rc, pth, ctx, results) -> {
                        m.put("results", results(results));
                        p.finish(rc);
                    }, null, null, null, null);
                return p;
            }
            default:
                throw new Fatal("unknown op " + kind);
            }
        }

        Op toOp(Map<String, Object> sub) {
            String kind = Json.str(sub, "op", "");
            String path = Json.str(sub, "path", "/");
            int version = (int) Json.lng(sub, "version", -1);
            switch (kind) {
            case "create": {
                List<ACL> acl = acl(sub.get("acl"));
                if (sub.containsKey("flags")) {
                    int flags = (int) Json.lng(sub, "flags", 0);
                    return sub.containsKey("ttl") ? Op.create(path, data(sub), acl, flags, Json.lng(sub, "ttl", -1))
                                                  : Op.create(path, data(sub), acl, flags);
                }
                CreateMode mode = CreateMode.valueOf(Json.str(sub, "mode", "PERSISTENT"));
                return sub.containsKey("ttl") ? Op.create(path, data(sub), acl, mode, Json.lng(sub, "ttl", -1))
                                              : Op.create(path, data(sub), acl, mode);
            }
            case "delete":
                return Op.delete(path, version);
            case "setData":
                return Op.setData(path, data(sub), version);
            case "check":
                return Op.check(path, version);
            case "getData":
                return Op.getData(path);
            case "getChildren":
                return Op.getChildren(path);
            default:
                throw new IllegalArgumentException("unknown multi op " + kind);
            }
        }
    }

    /** A multi request built by hand: any ops, any mix, possibly none. Serialized like MultiOperationRecord. */
    static final class RawMulti implements Record {
        final List<Op> ops;

        RawMulti(List<Op> ops) {
            this.ops = ops;
        }

        @Override
        public void serialize(OutputArchive a, String tag) throws IOException {
            a.startRecord(this, tag);
            for (Op op : ops) {
                new MultiHeader(op.getType(), false, -1).serialize(a, tag);
                op.toRequestRecord().serialize(a, tag);
            }
            new MultiHeader(-1, true, -1).serialize(a, tag);
            a.endRecord(this, tag);
        }

        @Override
        public void deserialize(InputArchive a, String tag) {
            throw new UnsupportedOperationException();
        }
    }

    // ------------------------------------------------------------------ value conversions

    static byte[] data(Map<String, Object> op) {
        if (op.containsKey("data_b64")) {
            return Base64.getDecoder().decode(Json.str(op, "data_b64", ""));
        }
        if (!op.containsKey("data")) {
            return new byte[0];
        }
        Object d = op.get("data");
        return d == null ? null : ((String) d).getBytes(StandardCharsets.UTF_8);
    }

    static void putData(Map<String, Object> m, byte[] data) {
        if (data == null) {
            m.put("data", null);
            return;
        }
        try {
            String s = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(data)).toString();
            m.put("data", s);
        } catch (CharacterCodingException e) {
            m.put("data_b64", Base64.getEncoder().encodeToString(data));
        }
    }

    static List<ACL> acl(Object spec) {
        if (spec == null) {
            return ZooDefs.Ids.OPEN_ACL_UNSAFE;
        }
        if (spec instanceof String) {
            switch ((String) spec) {
            case "open":
                return ZooDefs.Ids.OPEN_ACL_UNSAFE;
            case "read":
                return ZooDefs.Ids.READ_ACL_UNSAFE;
            case "creator":
                return ZooDefs.Ids.CREATOR_ALL_ACL;
            case "empty":
                return new ArrayList<>();
            default:
                throw new IllegalArgumentException("unknown acl name " + spec);
            }
        }
        List<ACL> out = new ArrayList<>();
        for (Object o : (List<?>) spec) {
            List<?> e = (List<?>) o;
            out.add(new ACL(((Number) e.get(0)).intValue(), new Id((String) e.get(1), (String) e.get(2))));
        }
        return out;
    }

    static Object aclOut(List<ACL> acl) {
        if (acl == null) {
            return null;
        }
        List<Object> out = new ArrayList<>();
        for (ACL a : acl) {
            out.add(Arrays.asList(a.getPerms(), a.getId().getScheme(), a.getId().getId()));
        }
        return out;
    }

    static Object stat(Stat st) {
        if (st == null) {
            return null;
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("czxid", st.getCzxid());
        m.put("mzxid", st.getMzxid());
        m.put("ctime", st.getCtime());
        m.put("mtime", st.getMtime());
        m.put("version", st.getVersion());
        m.put("cversion", st.getCversion());
        m.put("aversion", st.getAversion());
        m.put("ephemeralOwner", st.getEphemeralOwner());
        m.put("dataLength", st.getDataLength());
        m.put("numChildren", st.getNumChildren());
        m.put("pzxid", st.getPzxid());
        return m;
    }

    static Object results(List<OpResult> results) {
        if (results == null) {
            return null;
        }
        List<Object> out = new ArrayList<>();
        for (OpResult r : results) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("type", r.getType());
            if (r instanceof OpResult.CreateResult) {
                OpResult.CreateResult c = (OpResult.CreateResult) r;
                m.put("path", c.getPath());
                m.put("stat", stat(c.getStat()));
            } else if (r instanceof OpResult.SetDataResult) {
                m.put("stat", stat(((OpResult.SetDataResult) r).getStat()));
            } else if (r instanceof OpResult.ErrorResult) {
                m.put("err", ((OpResult.ErrorResult) r).getErr());
            } else if (r instanceof OpResult.GetDataResult) {
                OpResult.GetDataResult g = (OpResult.GetDataResult) r;
                putData(m, g.getData());
                m.put("stat", stat(g.getStat()));
            } else if (r instanceof OpResult.GetChildrenResult) {
                List<String> ch = ((OpResult.GetChildrenResult) r).getChildren();
                m.put("children", ch == null ? null : new ArrayList<Object>(ch));
            }
            out.add(m);
        }
        return out;
    }

    // ------------------------------------------------------------------ cuttable TCP proxy

    /**
     * One per session: two listening sockets (so that the client's host list has two entries and a
     * reconnect does not wait the extra second a single-host list waits), one upstream connection at a time.
     * While cut, new client connections are accepted and held unread until heal().
     */
    static final class Proxy {
        final Sess sess;
        final String upHost;
        final int upPort;
        final ServerSocket[] listeners = new ServerSocket[2];
        final List<Socket> held = new ArrayList<>();
        Socket[] active; // {client, upstream}
        boolean cut;
        boolean closed;

        Proxy(Sess sess, String upHost, int upPort) throws IOException {
            this.sess = sess;
            this.upHost = upHost;
            this.upPort = upPort;
            for (int k = 0; k < listeners.length; k++) {
                ServerSocket ss = new ServerSocket();
                ss.bind(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0));
                listeners[k] = ss;
                Thread th = new Thread(() -> acceptLoop(ss), "proxy-accept-" + sess.name);
                th.setDaemon(true);
                th.start();
            }
        }

        String connectString() {
            return "127.0.0.1:" + listeners[0].getLocalPort() + ",127.0.0.1:" + listeners[1].getLocalPort();
        }

        void acceptLoop(ServerSocket ss) {
            while (true) {
                Socket c;
                try {
                    c = ss.accept();
                    c.setTcpNoDelay(true);
                } catch (IOException e) {
                    return;
                }
                synchronized (this) {
                    if (closed) {
                        quietClose(c);
                    } else if (cut) {
                        held.add(c);
                    } else {
                        start(c);
                    }
                }
            }
        }

        /** Called with the lock held. */
        void start(Socket c) {
            if (active != null) {
                quietClose(active[0]);
                quietClose(active[1]);
                active = null;
            }
            Socket u;
            try {
                u = new Socket();
                u.setTcpNoDelay(true);
                u.connect(new InetSocketAddress(upHost, upPort));
            } catch (IOException e) {
                quietClose(c);
                return;
            }
            final Socket[] pair = new Socket[] {c, u};
            active = pair;
            Map<String, Object> m = sess.line();
            m.put("w", "connect");
            sess.wire(m);
            Thread up = new Thread(() -> pump(pair, c, u, true), "proxy-up-" + sess.name);
            Thread down = new Thread(() -> pump(pair, u, c, false), "proxy-down-" + sess.name);
            up.setDaemon(true);
            down.setDaemon(true);
            up.start();
            down.start();
        }

        synchronized void cut() {
            cut = true;
            if (active != null) {
                quietClose(active[0]);
                quietClose(active[1]);
                active = null;
            }
            Map<String, Object> m = sess.line();
            m.put("w", "cut");
            sess.wire(m);
        }

        synchronized void heal() {
            cut = false;
            if (!held.isEmpty()) {
                Socket last = held.remove(held.size() - 1);
                for (Socket h : held) {
                    quietClose(h);
                }
                held.clear();
                start(last);
            }
        }

        synchronized void close() {
            closed = true;
            for (ServerSocket ss : listeners) {
                try {
                    ss.close();
                } catch (IOException e) {
                    // ignore
                }
            }
            for (Socket h : held) {
                quietClose(h);
            }
            held.clear();
            if (active != null) {
                quietClose(active[0]);
                quietClose(active[1]);
                active = null;
            }
        }

        static void quietClose(Socket s) {
            try {
                s.close();
            } catch (IOException e) {
                // ignore
            }
        }

        boolean isActive(Socket[] pair) {
            synchronized (this) {
                return active == pair;
            }
        }

        void pump(Socket[] pair, Socket from, Socket to, boolean toServer) {
            FrameLog log = new FrameLog(sess, toServer);
            byte[] buf = new byte[65536];
            try {
                InputStream in = from.getInputStream();
                OutputStream out = to.getOutputStream();
                while (true) {
                    int n = in.read(buf);
                    if (n < 0) {
                        break;
                    }
                    if (!isActive(pair)) {
                        break;
                    }
                    log.feed(buf, n);
                    out.write(buf, 0, n);
                    out.flush();
                }
            } catch (IOException e) {
                // connection gone
            }
            quietClose(from);
            quietClose(to);
        }
    }

    /** Splits one direction of a client connection into frames and records their headers. */
    static final class FrameLog {
        final Sess sess;
        final boolean toServer;
        byte[] acc = new byte[0];
        boolean first = true;

        FrameLog(Sess sess, boolean toServer) {
            this.sess = sess;
            this.toServer = toServer;
        }

        void feed(byte[] b, int n) {
            byte[] na = Arrays.copyOf(acc, acc.length + n);
            System.arraycopy(b, 0, na, acc.length, n);
            acc = na;
            int pos = 0;
            while (acc.length - pos >= 4) {
                int len = ByteBuffer.wrap(acc, pos, 4).getInt();
                if (len < 0 || acc.length - pos - 4 < len) {
                    if (len < 0) {
                        Map<String, Object> m = sess.line();
                        m.put("w", toServer ? ">" : "<");
                        m.put("badlen", len);
                        sess.wire(m);
                        pos = acc.length;
                    }
                    break;
                }
                byte[] frame = Arrays.copyOfRange(acc, pos + 4, pos + 4 + len);
                pos += 4 + len;
                try {
                    record(frame);
                } catch (IOException | RuntimeException e) {
                    Map<String, Object> m = sess.line();
                    m.put("w", toServer ? ">" : "<");
                    m.put("unparsed", Base64.getEncoder().encodeToString(frame));
                    sess.wire(m);
                }
                first = false;
            }
            acc = Arrays.copyOfRange(acc, pos, acc.length);
        }

        static String ustring(DataInputStream d) throws IOException {
            int len = d.readInt();
            if (len < 0) {
                return null;
            }
            byte[] b = new byte[len];
            d.readFully(b);
            return new String(b, StandardCharsets.UTF_8);
        }

        static List<Object> strings(DataInputStream d) throws IOException {
            int n = d.readInt();
            if (n < 0) {
                return null;
            }
            List<Object> out = new ArrayList<>();
            for (int k = 0; k < n; k++) {
                out.add(ustring(d));
            }
            return out;
        }

        void record(byte[] frame) throws IOException {
            DataInputStream d = new DataInputStream(new ByteArrayInputStream(frame));
            Map<String, Object> m = sess.line();
            if (first && toServer) {
                m.put("w", ">connect");
                m.put("proto", d.readInt());
                m.put("lastZxid", d.readLong());
                m.put("timeout", d.readInt());
                m.put("session", d.readLong());
                int pl = d.readInt();
                m.put("passwdLen", pl);
                if (pl > 0) {
                    d.skipBytes(pl);
                }
                m.put("ro", d.available() > 0 ? (Object) d.readBoolean() : "absent");
                sess.wire(m);
                return;
            }
            if (first) {
                m.put("w", "<connect");
                m.put("len", frame.length);
                m.put("proto", d.readInt());
                m.put("timeout", d.readInt());
                long sid = d.readLong();
                m.put("session", sid);
                int pl = d.readInt();
                byte[] pw = pl > 0 ? new byte[pl] : new byte[0];
                d.readFully(pw);
                byte[] expect = new byte[16];
                new Random(sid ^ 0xB3415C00L).nextBytes(expect);
                if (sid == 0 && Arrays.equals(pw, new byte[16])) {
                    m.put("passwd", "zeros");
                } else {
                    m.put("passwd", Arrays.equals(pw, expect) ? "derived" : hex(pw));
                }
                m.put("ro", d.available() > 0 ? (Object) d.readBoolean() : "absent");
                sess.wire(m);
                return;
            }
            if (toServer) {
                int xid = d.readInt();
                int type = d.readInt();
                if (xid == -2) {
                    return; // ping: timer driven, not part of the comparison
                }
                m.put("w", ">");
                m.put("xid", xid);
                m.put("type", type);
                if (type == ZooDefs.OpCode.setWatches || type == ZooDefs.OpCode.setWatches2) {
                    m.put("rel", d.readLong());
                    m.put("data", strings(d));
                    m.put("exist", strings(d));
                    m.put("child", strings(d));
                    if (type == ZooDefs.OpCode.setWatches2) {
                        m.put("persistent", strings(d));
                        m.put("recursive", strings(d));
                    }
                } else if (type == ZooDefs.OpCode.auth) {
                    d.readInt();
                    m.put("scheme", ustring(d));
                }
                sess.wire(m);
                return;
            }
            int xid = d.readInt();
            long zxid = d.readLong();
            int err = d.readInt();
            if (xid == -2) {
                return;
            }
            m.put("w", "<");
            m.put("xid", xid);
            m.put("zxid", zxid);
            m.put("err", err);
            m.put("len", frame.length - 16);
            if (xid == -1) {
                int type = d.readInt();
                int state = d.readInt();
                String path = ustring(d);
                m.put("ev", Arrays.asList(type, state, path));
            }
            sess.wire(m);
        }

        static String hex(byte[] b) {
            StringBuilder sb = new StringBuilder();
            for (byte x : b) {
                sb.append(String.format("%02x", x & 0xff));
            }
            return sb.toString();
        }
    }

    // ------------------------------------------------------------------ minimal JSON

    static final class Json {
        static Object parse(String s) {
            P p = new P(s);
            Object v = p.value();
            p.ws();
            if (p.i != s.length()) {
                throw new IllegalArgumentException("trailing characters in JSON: " + s);
            }
            return v;
        }

        static String str(Map<String, Object> m, String k, String dflt) {
            Object v = m.get(k);
            return v == null ? dflt : v.toString();
        }

        static long lng(Map<String, Object> m, String k, long dflt) {
            Object v = m.get(k);
            return v == null ? dflt : ((Number) v).longValue();
        }

        static boolean bool(Map<String, Object> m, String k, boolean dflt) {
            Object v = m.get(k);
            return v == null ? dflt : (Boolean) v;
        }

        @SuppressWarnings("unchecked")
        static List<Object> list(Map<String, Object> m, String k) {
            Object v = m.get(k);
            return v == null ? Collections.emptyList() : (List<Object>) v;
        }

        static final class P {
            final String s;
            int i;

            P(String s) {
                this.s = s;
            }

            void ws() {
                while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                    i++;
                }
            }

            Object value() {
                ws();
                if (i >= s.length()) {
                    throw new IllegalArgumentException("unexpected end of JSON");
                }
                char c = s.charAt(i);
                if (c == '{') {
                    i++;
                    Map<String, Object> m = new LinkedHashMap<>();
                    ws();
                    if (s.charAt(i) == '}') {
                        i++;
                        return m;
                    }
                    while (true) {
                        ws();
                        String k = string();
                        ws();
                        expect(':');
                        m.put(k, value());
                        ws();
                        if (s.charAt(i) == ',') {
                            i++;
                        } else {
                            expect('}');
                            return m;
                        }
                    }
                }
                if (c == '[') {
                    i++;
                    List<Object> l = new ArrayList<>();
                    ws();
                    if (s.charAt(i) == ']') {
                        i++;
                        return l;
                    }
                    while (true) {
                        l.add(value());
                        ws();
                        if (s.charAt(i) == ',') {
                            i++;
                        } else {
                            expect(']');
                            return l;
                        }
                    }
                }
                if (c == '"') {
                    return string();
                }
                if (s.startsWith("true", i)) {
                    i += 4;
                    return Boolean.TRUE;
                }
                if (s.startsWith("false", i)) {
                    i += 5;
                    return Boolean.FALSE;
                }
                if (s.startsWith("null", i)) {
                    i += 4;
                    return null;
                }
                int st = i;
                while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) {
                    i++;
                }
                String num = s.substring(st, i);
                if (num.isEmpty()) {
                    throw new IllegalArgumentException("bad JSON at " + st + ": " + s);
                }
                if (num.contains(".") || num.contains("e") || num.contains("E")) {
                    return Double.parseDouble(num);
                }
                return Long.parseLong(num);
            }

            void expect(char c) {
                if (i >= s.length() || s.charAt(i) != c) {
                    throw new IllegalArgumentException("expected '" + c + "' at " + i + ": " + s);
                }
                i++;
            }

            String string() {
                expect('"');
                StringBuilder sb = new StringBuilder();
                while (true) {
                    char c = s.charAt(i++);
                    if (c == '"') {
                        return sb.toString();
                    }
                    if (c != '\\') {
                        sb.append(c);
                        continue;
                    }
                    char e = s.charAt(i++);
                    switch (e) {
                    case 'n':
                        sb.append('\n');
                        break;
                    case 't':
                        sb.append('\t');
                        break;
                    case 'r':
                        sb.append('\r');
                        break;
                    case 'b':
                        sb.append('\b');
                        break;
                    case 'f':
                        sb.append('\f');
                        break;
                    case 'u':
                        sb.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                        i += 4;
                        break;
                    default:
                        sb.append(e);
                    }
                }
            }
        }

        static String write(Object v) {
            StringBuilder sb = new StringBuilder();
            write(sb, v);
            return sb.toString();
        }

        static void write(StringBuilder sb, Object v) {
            if (v == null) {
                sb.append("null");
            } else if (v instanceof Map) {
                sb.append('{');
                boolean firstKey = true;
                for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                    if (!firstKey) {
                        sb.append(',');
                    }
                    firstKey = false;
                    quote(sb, e.getKey().toString());
                    sb.append(':');
                    write(sb, e.getValue());
                }
                sb.append('}');
            } else if (v instanceof List) {
                sb.append('[');
                boolean firstItem = true;
                for (Object o : (List<?>) v) {
                    if (!firstItem) {
                        sb.append(',');
                    }
                    firstItem = false;
                    write(sb, o);
                }
                sb.append(']');
            } else if (v instanceof String) {
                quote(sb, (String) v);
            } else {
                sb.append(v.toString());
            }
        }

        static void quote(StringBuilder sb, String s) {
            sb.append('"');
            for (int k = 0; k < s.length(); k++) {
                char c = s.charAt(k);
                if (c == '"' || c == '\\') {
                    sb.append('\\').append(c);
                } else if (c < 0x20 || c > 0x7e) {
                    sb.append(String.format("\\u%04x", (int) c));
                } else {
                    sb.append(c);
                }
            }
            sb.append('"');
        }
    }
}
