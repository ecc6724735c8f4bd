# Sweep plan, executed by cifar10_torch_gpu.py (names train, rec, time come from there).
t0 = time.time()
best_t, best_acc = None, 0
for opt, lr, wd in [("adam", 2e-3, 0.0), ("sgd", 0.05, 5e-4), ("adam", 3e-3, 0.0)]:
    m, c = train("cifar-teacher", 20, opt, lr, wd); rec(f"teacher 20ep {opt} lr={lr} wd={wd}", c)
    if c[-1] > best_acc: best_t, best_acc = m, c[-1]
rec("time", [time.time() - t0])
best_t.eval()
for ep in (20, 15):
    for opt, lr, wd in [("sgd", 0.05, 5e-4), ("sgd", 0.02, 5e-4)]:
        rec(f"student-scratch {ep}ep {opt} lr={lr}", train("cifar-student", ep, opt, lr, wd, seed=1)[1])
        rec(f"student-kd {ep}ep {opt} lr={lr}", train("cifar-student", ep, opt, lr, wd, seed=1, teacher=best_t)[1])
    rec(f"time", [time.time() - t0])
