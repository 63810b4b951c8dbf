"""What the agent says about its own release: the ``agent.upgrade`` result and the ``status`` line.

Each message tells the point (or the county) what to do; ``details`` = {running, target, state, reason?,
sha256?} is what the collector's rollout view reads (reason only with fail: one of state.py REASONS; sha256:
the failed build, so a failure of a build the county replaced is not counted against the new one).
"""

from __future__ import annotations

from datetime import datetime

from agent.upgrade import state as st
from agent.vocabulary import ERROR, FAIL, OK, WARN


def _when(ts) -> str:
    return datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S") if ts else "未知时间"


def _minutes(trial: dict) -> str:
    """The trial's watchdog time in minutes (counted while the trial runs; launch.py)."""
    from agent.upgrade.launch import budget_of

    return f"{budget_of(trial) / 60:g}" if budget_of(trial) >= 60 else f"{budget_of(trial) / 60:.2f}"


def describe(m, up) -> tuple[str, str, dict]:
    """(status, message, details) of manager ``m`` under the policy's ``agent:`` section ``up``."""
    own, target = m.identity.version, up.version
    details: dict = {"running": own, "target": target}
    if m.trial is not None:
        t = m.trial
        return WARN, (f"正在试运行版本 {own}（从 {t.get('from_version')} 升级），等待采集端确认本版本的第一份报告；"
                      f"试运行 {_minutes(t)} 分钟内仍未确认将自动回退到 {t.get('from_version')}"), {
            **details, "state": "trial"}
    if m.start_problem:
        p = m.start_problem
        what = ("可被系统和管理员以外的本机用户改写（或其权限无法读取）" if p.get("reason") == st.UNSAFE_FILE
                else "已被改动（SHA-256 不符）")
        return FAIL, (f"本机已安装的版本 {p.get('version')} 的文件{what}，未运行它，继续运行 {own}；"
                      "请县级管理员检查本机，或在策略中重新指定版本"), {
            **details, "state": "active_changed", "reason": p.get("reason"), "detail": p.get("detail")}
    acl_problem = getattr(m.state, "acl_problem", None)
    if acl_problem:  # agent/statedir.py could not make the directory the agent's alone, or not read it back
        return ERROR, (f"无法确认本机状态目录只有系统和管理员可以访问（{acl_problem}）：令牌可能被他人读取，"
                       f"不会运行任何下载的新版本，继续运行 {own}；请县级管理员以管理员身份检查该目录的权限"), {
            **details, "state": "state_dir_unprotected", "detail": acl_problem}
    if m.unreadable:
        return WARN, f"本机升级状态文件无法读取，暂不升级，继续运行 {own}（{m.unreadable}）", {
            **details, "state": "state_unreadable"}
    if not target:
        return OK, f"采集端策略未指定代理版本，运行版本 {own}", {**details, "state": "no_target"}
    if target == own:
        return OK, f"按策略运行版本 {own}", {**details, "state": "current"}
    failed = m._failed(target)
    if failed:
        reason = failed.get("reason")
        return FAIL, (f"升级到版本 {target} 失败：{st.REASON_CN.get(reason, reason)}；继续运行 {own}。"
                      f"{st.REMEDY_CN.get(reason, '')}"), {
            **details, "state": "failed", "reason": reason, "detail": failed.get("detail"),
            "failed_at": failed.get("at"), "sha256": failed.get("sha256")}
    seen = m.cached.get("unreachable") or {}
    if seen.get("version") == target:  # not a ban: the build is tried again (manager.py TRIAL_AGAIN_AFTER)
        from agent.upgrade.launch import UNREACHABLE_TRIES

        return FAIL, (f"升级到版本 {target}：{st.REASON_CN[st.COLLECTOR_UNREACHABLE]}（第 {seen.get('count')} 次，"
                      f"最多 {UNREACHABLE_TRIES} 次）；继续运行 {own}。{st.REMEDY_CN[st.COLLECTOR_UNREACHABLE]}"), {
            **details, "state": "unreachable", "reason": st.COLLECTOR_UNREACHABLE, "sha256": seen.get("sha256"),
            "failed_at": seen.get("at")}
    details.update(window=up.window_text, max_kbps=up.max_kbps)
    if m._older(target) and not up.downgrade:
        return WARN, (f"策略指定的版本 {target} 比本机运行的 {own} 旧，策略未允许降级（downgrade: true），"
                      f"继续运行 {own}"), {**details, "state": "downgrade_refused"}
    if not m.identity.frozen:
        return WARN, (f"本机代理是 pip 安装的，不能自动升级到版本 {target}：自动升级需要自带运行环境的安装包"
                      f"（Linux 独立版或 Windows exe）；请改用安装包，或手动升级"), {
            **details, "state": "cannot_self_upgrade"}
    if not m.state.release_keys():
        return FAIL, (f"本机未保存代理发布签名公钥，无法校验版本 {target} 的发布包，不会升级；"
                      "请重新注册（pointwatch-agent enroll）"), {
            **details, "state": "no_release_keys", "reason": st.BAD_SIGNATURE}
    if m.handover_path:
        return WARN, f"版本 {target} 已校验，正在切换", {**details, "state": "handing_over"}
    done, size = m.progress or (0, 0)
    percent = int(done * 100 / size) if size else 0
    if m.problem:
        return WARN, f"{m.problem}；继续运行 {own}", {**details, "state": "retrying"}
    if not up.in_window(m.minute()):
        return WARN, (f"策略要求升级到版本 {target}，将在升级时段 {up.window_text}（本机时间）内进行"
                      f"{f'（已下载 {percent}%）' if m.progress else ''}；现运行 {own}"), {
            **details, "state": "waiting_for_window"}
    if m.progress:
        return WARN, f"正在下载版本 {target}（已完成 {percent}%，限速 {up.max_kbps} kbit/s）", {
            **details, "state": "downloading", "bytes": done, "size": size}
    return WARN, f"策略要求升级到版本 {target}，准备下载", {**details, "state": "pending"}


def fetch_problem(exc, version: str) -> str:
    """What the point reads when the collector did not give the manifest (a transport.SendError)."""
    if exc.status == 404:
        return f"采集端没有版本 {version} 适用于本机平台的发布包"
    if exc.status == 409:
        return f"采集端已暂停版本 {version} 的推送"
    if exc.status == 403 and "not_in_policy" in exc.body:
        return f"采集端表示本服务点的策略未指定版本 {version}"
    if exc.status in (401, 403):
        return f"采集端拒绝了本机令牌（HTTP {exc.status}），无法下载新版本，请重新注册"
    if exc.status is None:
        return f"无法连接采集端下载新版本（{exc}）"
    return f"采集端未能提供版本 {version} 的发布清单（HTTP {exc.status}）"


def status_info(state_dir, identity, target: str | None) -> dict:
    """``pointwatch-agent status`` --json's ``upgrade``: the running version and what upgrade.json says."""
    from agent.upgrade import upgrade_path

    info: dict = {"running": identity.version, "self_upgrade": identity.frozen, "target": target}
    try:
        state = st.load(upgrade_path(state_dir))
    except st.StateUnreadable as exc:
        return {**info, "error": str(exc)}
    failed = [f for f in state["failed"] if f.get("version") == target] if target else []
    return {**info, "active": state["active"], "previous": state["previous"], "trial": state["trial"],
            "last": state["last"], "failed": failed}


def status_line(info: dict) -> str:
    head = f"代理升级：运行版本 {info['running']}"
    if info.get("error"):
        return f"{head}；升级状态文件无法读取（{info['error']}）"
    if info.get("trial"):
        t = info["trial"]
        return f"{head}；正在试运行版本 {t.get('version')}（运行满 {_minutes(t)} 分钟仍无报告被确认将回退，已运行 {float(t.get('ran_s') or 0) / 60:.1f} 分钟）"
    target = info.get("target")
    if not target:
        tail = "策略未指定版本"
    elif target == info["running"]:
        tail = "与策略指定的版本一致"
    elif info.get("failed"):
        f = info["failed"][-1]
        tail = f"升级到 {target} 失败（{st.REASON_CN.get(f.get('reason'), f.get('reason'))}），不再重试该版本"
    elif not info.get("self_upgrade"):
        tail = f"策略指定 {target}，但 pip 安装的代理不能自动升级"
    else:
        tail = f"策略指定 {target}，将在升级时段内升级"
    last = info.get("last")
    if last:
        tail += f"；最近一次：{'已确认' if last.get('event') == 'committed' else '已回退'} {last.get('version')}（{_when(last.get('at'))}）"
    return f"{head}；{tail}"
