// Streamguard demo app: "Go live" / "Watch" a stream through three simulated providers, see
// which one carries it, the engine's event timeline and each provider's health and stats,
// and break providers from the UI (failed joins, outages, SDK errors, registry changes).
//
// Runs without a backend: an in-app registry on loopback stands in for one. To use a real
// registry: flutter run --dart-define=STREAMGUARD_REGISTRY=https://host/api

import 'package:flutter/material.dart';
import 'package:streamguard/streamguard.dart';

import 'demo_controller.dart';

void main() {
  WidgetsFlutterBinding.ensureInitialized();
  runApp(StreamguardDemoApp(
    controller: DemoController.start(
      registryUrl: const String.fromEnvironment('STREAMGUARD_REGISTRY'),
    ),
  ));
}

class StreamguardDemoApp extends StatelessWidget {
  const StreamguardDemoApp({super.key, required this.controller});

  final Future<DemoController> controller;

  @override
  Widget build(BuildContext context) {
    return MaterialApp(
      title: 'Streamguard demo',
      theme: ThemeData(colorSchemeSeed: Colors.indigo, useMaterial3: true),
      home: FutureBuilder<DemoController>(
        future: controller,
        builder: (context, snapshot) {
          if (snapshot.hasError) {
            return Scaffold(
              body: Center(
                child: Text('Could not start Streamguard: ${snapshot.error}'),
              ),
            );
          }
          final c = snapshot.data;
          if (c == null) {
            return const Scaffold(
                body: Center(child: CircularProgressIndicator()));
          }
          return DemoPage(controller: c);
        },
      ),
    );
  }
}

class DemoPage extends StatelessWidget {
  const DemoPage({super.key, required this.controller});

  final DemoController controller;

  @override
  Widget build(BuildContext context) {
    return ListenableBuilder(
      listenable: controller,
      builder: (context, _) {
        final c = controller;
        return Scaffold(
          appBar: AppBar(title: const Text('Streamguard demo')),
          body: ListView(
            padding: const EdgeInsets.all(12),
            children: [
              _SessionCard(c),
              const _SectionTitle('Providers'),
              for (final name in c.adapters.keys) _ProviderCard(c, name),
              const _SectionTitle('Timeline'),
              if (c.timeline.isEmpty)
                const Padding(
                  padding: EdgeInsets.all(8),
                  child: Text('No events yet: go live or watch.'),
                ),
              for (final e in c.timeline) _EventTile(e),
            ],
          ),
        );
      },
    );
  }
}

class _SectionTitle extends StatelessWidget {
  const _SectionTitle(this.text);

  final String text;

  @override
  Widget build(BuildContext context) => Padding(
        padding: const EdgeInsets.fromLTRB(4, 16, 4, 8),
        child: Text(text, style: Theme.of(context).textTheme.titleMedium),
      );
}

class _SessionCard extends StatelessWidget {
  const _SessionCard(this.c);

  final DemoController c;

  @override
  Widget build(BuildContext context) {
    final s = c.session;
    final live = s != null && !(s.state == SessionState.ended || s.state == SessionState.failed);
    final provider = s?.provider;
    return Card(
      child: Padding(
        padding: const EdgeInsets.all(12),
        child: Column(
          crossAxisAlignment: CrossAxisAlignment.start,
          children: [
            Text('Stream "${c.streamId}"',
                style: Theme.of(context).textTheme.titleLarge),
            const SizedBox(height: 4),
            Text(
              key: const Key('current-provider'),
              s == null
                  ? 'Not started'
                  : '${s.state.name}${provider == null ? '' : ' on $provider'}'
                      ' (${s.role.name}, ${s.attempts} attempts, '
                      '${s.migrations} migrations)',
            ),
            if (c.lastError != null)
              Padding(
                padding: const EdgeInsets.only(top: 4),
                child: Text(
                  c.lastError!,
                  key: const Key('last-error'),
                  style: TextStyle(color: Theme.of(context).colorScheme.error),
                ),
              ),
            const SizedBox(height: 8),
            Wrap(
              spacing: 8,
              runSpacing: 8,
              children: [
                FilledButton.icon(
                  key: const Key('go-live'),
                  onPressed: c.busy || live ? null : c.goLive,
                  icon: const Icon(Icons.videocam),
                  label: const Text('Go live'),
                ),
                FilledButton.tonalIcon(
                  key: const Key('watch'),
                  onPressed: c.busy || live ? null : c.watch,
                  icon: const Icon(Icons.visibility),
                  label: const Text('Watch'),
                ),
                OutlinedButton(
                  key: const Key('end'),
                  onPressed: live ? c.end : null,
                  child: const Text('End'),
                ),
                TextButton(
                  onPressed: c.networkChanged,
                  child: const Text('Network changed'),
                ),
              ],
            ),
            if (c.busy) const LinearProgressIndicator(),
          ],
        ),
      ),
    );
  }
}

class _ProviderCard extends StatelessWidget {
  const _ProviderCard(this.c, this.name);

  final DemoController c;
  final String name;

  @override
  Widget build(BuildContext context) {
    final adapter = c.adapters[name]!;
    final stats = c.statsOf(name);
    final entry = c.registry?.entry(name);
    final carrying = c.session?.provider == name;
    final status = stats?.status ?? HealthStatus.unknown;
    return Card(
      key: Key('provider-$name'),
      child: Padding(
        padding: const EdgeInsets.all(12),
        child: Column(
          crossAxisAlignment: CrossAxisAlignment.start,
          children: [
            Row(
              children: [
                Text(name, style: Theme.of(context).textTheme.titleMedium),
                const SizedBox(width: 8),
                _StatusChip(status),
                if (carrying) ...[
                  const SizedBox(width: 8),
                  const Chip(label: Text('carrying the stream')),
                ],
                const Spacer(),
                if (entry != null)
                  Text('priority ${entry.priority}${entry.active ? '' : ', disabled'}'),
              ],
            ),
            if (stats != null)
              Padding(
                padding: const EdgeInsets.symmetric(vertical: 4),
                child: Text(_statsLine(stats)),
              ),
            Wrap(
              spacing: 8,
              runSpacing: 4,
              crossAxisAlignment: WrapCrossAlignment.center,
              children: [
                OutlinedButton(
                  key: Key('fail-next-$name'),
                  onPressed: () => c.failNextStart(name),
                  child: Text(adapter.failNext == 0
                      ? 'Fail next join'
                      : 'Fail next join (${adapter.failNext} queued)'),
                ),
                FilterChip(
                  key: Key('outage-$name'),
                  label: const Text('Outage'),
                  selected: adapter.down,
                  onSelected: (down) => c.setOutage(name, down),
                ),
                OutlinedButton(
                  onPressed: carrying
                      ? () => c.reportSdkError(name, ProviderErrorKind.network)
                      : null,
                  child: const Text('SDK: connection lost'),
                ),
                OutlinedButton(
                  onPressed: carrying
                      ? () =>
                          c.reportSdkError(name, ProviderErrorKind.unauthorized)
                      : null,
                  child: const Text('SDK: token expired'),
                ),
                if (entry != null) ...[
                  Row(
                    mainAxisSize: MainAxisSize.min,
                    children: [
                      const Text('Active'),
                      Switch(
                        key: Key('active-$name'),
                        value: entry.active,
                        onChanged: (v) => c.setActive(name, v),
                      ),
                    ],
                  ),
                  TextButton(
                    onPressed: () => c.prefer(name),
                    child: const Text('Make preferred'),
                  ),
                ],
              ],
            ),
          ],
        ),
      ),
    );
  }

  static String _statsLine(ProviderStats s) {
    final parts = <String>[
      '${s.successes}/${s.attempts} joins ok',
      if (s.reportedErrors > 0) '${s.reportedErrors} SDK errors',
      '${s.healthChecks - s.failedHealthChecks}/${s.healthChecks} checks ok',
      if (s.uptimePercent != null) '${s.uptimePercent!.toStringAsFixed(0)}% up',
      if (s.avgConnectLatencyMs != null)
        'join ${s.avgConnectLatencyMs!.toStringAsFixed(0)} ms',
      '${s.liveSessions} live',
      if (s.coolingForMs != null) 'cooling ${(s.coolingForMs! / 1000).ceil()} s',
    ];
    return parts.join(' · ');
  }
}

class _StatusChip extends StatelessWidget {
  const _StatusChip(this.status);

  final HealthStatus status;

  @override
  Widget build(BuildContext context) {
    final color = switch (status) {
      HealthStatus.healthy => Colors.green,
      HealthStatus.suspect => Colors.orange,
      HealthStatus.unhealthy => Colors.red,
      HealthStatus.unknown => Colors.grey,
    };
    return Chip(
      avatar: CircleAvatar(backgroundColor: color, radius: 6),
      label: Text(status.name),
      visualDensity: VisualDensity.compact,
    );
  }
}

class _EventTile extends StatelessWidget {
  const _EventTile(this.event);

  final StreamEvent event;

  @override
  Widget build(BuildContext context) {
    return ListTile(
      dense: true,
      leading: SizedBox(
        width: 64,
        child: Text('+${(event.atMs / 1000).toStringAsFixed(1)} s'),
      ),
      title: Text(describe(event)),
      subtitle: Text(event.kind.name),
    );
  }
}
