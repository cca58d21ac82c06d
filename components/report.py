from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Output

from components.images import CPU, image


@dsl.component(base_image=image(CPU), install_kfp_package=False)
def report(
    results: Input[list[Dataset]],
    decision: str,
    skipped: list,
    store: str,
    run_id: str,
    table: Output[Dataset],
    html: Output[HTML],
    markdown: Output[Markdown],
):
    """One table comparing the weight sources; then the run is recorded as the last successful one."""
    import shutil
    from pathlib import Path

    from cxrtl.promote import Decision
    from cxrtl.report import report_from_folders, skipped_sources_note
    from cxrtl.retrain import record_success
    from cxrtl.store import open_store

    target = open_store(store)
    notes = [Decision.from_json(decision).note(), *([skipped_sources_note(skipped)] if skipped else [])]
    written = report_from_folders([Path(r.path) for r in results], Path(table.path), target, run_id, notes)
    print(written.text())
    shutil.copyfile(Path(table.path) / "report.html", html.path)
    shutil.copyfile(Path(table.path) / "report.md", markdown.path)
    record_success(target, run_id)
