# Sweep plan, executed by cifar10_torch_gpu.py (names train, rec, time come from there).
t0 = time.time()
best_t, best_acc = None, 0
for opt, lr in [("sgd", 0.05), ("sgd", 0.02), ("sgd", 0.01), ("adam", 1e-3), ("adam", 2e-3)]:
    for wd in ([5e-4] if opt == "sgd" else [0.0, 5e-4]):
        m, c = train("cifar-teacher", 10, opt, lr, wd); rec(f"teacher {opt} lr={lr} wd={wd}", c)
        if c[-1] > best_acc: best_t, best_acc = m, c[-1]
print("t", time.time() - t0, flush=True)
best_t.eval()
for opt, lr, wd in [("sgd", 0.05, 5e-4), ("sgd", 0.02, 5e-4), ("adam", 2e-3, 0.0), ("adam", 1e-3, 0.0)]:
    rec(f"student-scratch {opt} lr={lr}", train("cifar-student", 10, opt, lr, wd, seed=1)[1])
    rec(f"student-kd {opt} lr={lr}", train("cifar-student", 10, opt, lr, wd, seed=1, teacher=best_t)[1])
for opt, lr, wd in [("sgd", 0.05, 5e-4), ("sgd", 0.1, 5e-4), ("adam", 2e-3, 0.0)]:
    for ep in (4, 6):
        rec(f"base {ep}ep {opt} lr={lr}", train("cifar-base", ep, opt, lr, wd)[1])
print("t", time.time() - t0, flush=True)
